/// Who is asking, as far as quizzes care: built from the call's principal by the service.
public struct QuizViewer: Sendable, Hashable {
  /// The user this caller acts for (a user token's subject, an API key's owner).
  public var userID: String?
  /// Holds the admin role.
  public var isAdmin: Bool
  /// One of the suite's services (internal client-credentials token).
  public var isService: Bool
  /// Not limited by scopes, or granted `quiz:read`: may see private content (drafts, answer keys).
  public var mayReadPrivate: Bool
  /// Not limited by scopes, or granted `quiz:write`.
  public var mayWrite: Bool

  public init(userID: String?, isAdmin: Bool = false, isService: Bool = false, mayReadPrivate: Bool = true, mayWrite: Bool = true) {
    self.userID = userID
    self.isAdmin = isAdmin
    self.isService = isService
    self.mayReadPrivate = mayReadPrivate
    self.mayWrite = mayWrite
  }

  public static let anonymous = QuizViewer(userID: nil, mayReadPrivate: false, mayWrite: false)
}

/// The one authorization policy of the quiz service. Every handler, list and export asks it;
/// the IDOR matrix test proves it method by method.
///
/// - Published quizzes: anyone, without answer keys.
/// - Drafts and archived quizzes: their author (with `quiz:read` when scoped), admins and the
///   suite's services. Anyone else gets NOT_FOUND: existence is not leaked.
/// - Deleted quizzes: NOT_FOUND to everyone, unless an admin asks with `show_deleted`.
/// - Answer keys: the author (with `quiz:read` when scoped), admins, services.
/// - Writes: the author (with `quiz:write` when scoped) or an admin; someone who can see the
///   quiz but may not change it gets PERMISSION_DENIED. Services read, never write.
public enum QuizAccess {
  public enum Read: Sendable, Hashable {
    case hidden
    case visible(answerKeys: Bool)
  }

  static func isAuthor(_ viewer: QuizViewer, of quiz: QuizRecord) -> Bool {
    viewer.userID != nil && viewer.userID == quiz.authorID && viewer.mayReadPrivate
  }

  public static func read(_ quiz: QuizRecord, by viewer: QuizViewer, showDeleted: Bool = false) -> Read {
    if quiz.isDeleted { return viewer.isAdmin && showDeleted ? .visible(answerKeys: true) : .hidden }
    if viewer.isAdmin || viewer.isService || isAuthor(viewer, of: quiz) { return .visible(answerKeys: true) }
    return quiz.state == .published ? .visible(answerKeys: false) : .hidden
  }

  /// Throws NOT_FOUND when the viewer can't see the quiz, PERMISSION_DENIED when it can but
  /// may not change it.
  public static func checkWrite(_ quiz: QuizRecord, by viewer: QuizViewer) throws(QuizError) {
    guard case .visible = read(quiz, by: viewer) else { throw .notFound(quiz.id) }
    let owns = viewer.userID != nil && viewer.userID == quiz.authorID
    guard viewer.mayWrite, viewer.isAdmin || owns else {
      throw .permissionDenied("only the quiz's author or an admin may change it")
    }
  }

  /// Any signed-in user may create quizzes and becomes their author.
  public static func author(forCreateBy viewer: QuizViewer) throws(QuizError) -> String {
    guard let user = viewer.userID, viewer.mayWrite else { throw .permissionDenied("only a signed-in user (or their API key with quiz:write) creates quizzes") }
    return user
  }

  /// Which quizzes a list or export may contain for this viewer (the SQL enforces it), the
  /// `show_deleted` that applies (admins only), and the scope page tokens are bound to.
  public static func listing(_ viewer: QuizViewer, showDeleted: Bool = false) -> (visibility: QuizVisibility, showDeleted: Bool, scope: String) {
    if viewer.isAdmin { return (.all, showDeleted, "admin") }
    if viewer.isService { return (.all, false, "service") }
    if let user = viewer.userID, viewer.mayReadPrivate { return (.publishedOrAuthoredBy(user), false, "user:\(user)") }
    return (.publishedOnly, false, "anonymous")
  }

  /// Whether the viewer may see a quiz's answer keys (assuming it may see the quiz).
  public static func answerKeys(_ quiz: QuizRecord, by viewer: QuizViewer) -> Bool {
    if case .visible(let keys) = read(quiz, by: viewer, showDeleted: true) { return keys }
    return false
  }
}

/// What goes wrong with quiz operations; mapped to a status once (QuizError+RPC.swift).
public enum QuizError: Error, Sendable, Hashable {
  case notFound(String)
  case permissionDenied(String)
  /// The write named an etag that is no longer current.
  case etagMismatch(id: String)
  /// The state forbids it: a `google.rpc.PreconditionFailure` violation (type, subject, description).
  case failedPrecondition(type: String, subject: String, description: String)
  /// Beyond a count limit (questions per quiz): INVALID_ARGUMENT naming the limit.
  case limitExceeded(field: String, limit: Int, description: String)
  case invalidArgument(field: String, description: String)
}
