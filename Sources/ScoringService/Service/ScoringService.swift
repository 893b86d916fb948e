import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage
import SwiftProtobuf

/// The caller as scoring sees it.
struct ScoringViewer: Sendable, Hashable {
  var userID: String?
  var isAdmin: Bool
  var isService: Bool
}

/// `scoring.v1.ScoringService`. Attempts are event-sourced (`AttemptRepository`); answer keys
/// come from the quiz service (`QuizSource`), snapshotted in `attempt.started`; Play and
/// SubmitAnswers live in ScoringService+Play.swift, leaderboards in +Leaderboard.swift.
public struct ScoringService: Scoring_V1_ScoringService.SimpleServiceProtocol {
  let db: Database
  let quizzes: any QuizSource
  let names: any NameDirectory
  let hub: LeaderboardHub
  /// Write-behind play counters (nil: not kept, e.g. in tools that only read).
  let counters: PlayCounters?
  /// Admins reading another user's attempts or statistics are audited.
  let audit: AuditLog
  let attempts = AttemptRepository()
  let board = LeaderboardRepository()
  var reader: LeaderboardReader { LeaderboardReader(db: self.db, names: self.names) }
  let logger: Logger
  /// Epoch milliseconds; tests may pass another clock.
  let now: @Sendable () -> Int64

  public init(
    db: Database, quizzes: any QuizSource, names: any NameDirectory, hub: LeaderboardHub, counters: PlayCounters? = nil, audit: AuditLog = .disabled,
    logger: Logger,
    now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
  ) {
    self.db = db
    self.quizzes = quizzes
    self.names = names
    self.hub = hub
    self.counters = counters
    self.audit = audit
    self.logger = logger
    self.now = now
  }

  /// Leaderboards are public (for published quizzes, checked in the handler); everything else
  /// needs a signed-in caller, and who sees which attempt is decided per handler.
  public static var policies: AccessPolicies {
    typealias M = Scoring_V1_ScoringService.Method
    return AccessPolicies([M.GetLeaderboard.descriptor: .public, M.WatchLeaderboard.descriptor: .public], fallback: .authenticated)
  }

  static func viewer() -> ScoringViewer {
    guard let principal = ServiceContext.current?.call?.principal else { return ScoringViewer(userID: nil, isAdmin: false, isService: false) }
    return ScoringViewer(userID: principal.userID, isAdmin: principal.roles.contains("admin"), isService: principal.kind == .service)
  }

  // MARK: Start

  public func startAttempt(request: Scoring_V1_StartAttemptRequest, context: ServerContext) async throws -> Scoring_V1_Attempt {
    let state = try await self.start(quizID: request.quizID, idempotencyKey: request.idempotencyKey)
    return Self.message(state)
  }

  /// A new attempt, or the one this user started with the same key.
  func start(quizID: String, idempotencyKey: String) async throws -> AttemptState {
    let viewer = Self.viewer()
    guard let userID = viewer.userID else { throw RPCError(code: .permissionDenied, message: "attempts are played by users") }
    guard !quizID.isEmpty else { throw RPCError(code: .invalidArgument, message: "quiz_id is required") }
    let key = idempotencyKey.isEmpty ? nil : idempotencyKey
    if let key, let existing = try await self.existing(userID: userID, key: key, quizID: quizID) { return existing }
    let quiz = try await self.visibleQuiz(quizID, viewer: viewer)
    guard quiz.state == .published else {
      throw RPCError(code: .failedPrecondition, message: "quiz \(quizID) is not published")
    }
    let started = AttemptEvent.Started(
      attemptID: Self.newID("at_"), quizID: quiz.id, userID: userID, quizAuthorID: quiz.authorID, quizEtag: quiz.etag,
      timeLimitMs: quiz.timeLimitMs, questions: quiz.keys, idempotencyKey: key, atMs: self.now(),
      shown: try quiz.questions.map { try $0.serializedBytes() })
    do {
      return try await self.db.transaction { uow in try await self.attempts.start(started, in: uow) }
    } catch StorageError.uniqueViolation {
      // A concurrent start with the same key won: the constraint, not a read, decides.
      if let key, let existing = try await self.existing(userID: userID, key: key, quizID: quizID) { return existing }
      throw RPCError(code: .aborted, message: "attempt start conflicted; retry")
    }
  }

  private func existing(userID: String, key: String, quizID: String) async throws -> AttemptState? {
    guard let id = try await self.db.read({ uow in try await self.attempts.find(userID: userID, idempotencyKey: key, in: uow) }) else {
      return nil
    }
    guard let state = try await self.db.read({ uow in try await self.attempts.find(id: id, in: uow) }) else { return nil }
    guard state.started.quizID == quizID else {
      throw RPCError(code: .invalidArgument, message: "idempotency_key was already used for another quiz")
    }
    return state
  }

  /// The quiz if `viewer` may see it, as the quiz service decides (QuizAccess): published
  /// quizzes for everyone, drafts and archived ones for their author and admins; otherwise
  /// (and when deleted) NOT_FOUND. Read fresh from the quiz service (starting an attempt).
  func visibleQuiz(_ id: String, viewer: ScoringViewer) async throws -> QuizSnapshot {
    let quiz = try await Self.askQuizService(id) { try await self.quizzes.quiz(id: id) }
    try Self.checkVisible(QuizSummary(id: quiz.id, authorID: quiz.authorID, state: quiz.state), viewer: viewer)
    return quiz
  }

  /// The same rule on the quiz's author and state as cached until its next event (reads of
  /// boards and attempts: a thousand watchers arriving cost the quiz service one call).
  func visibleSummary(_ id: String, viewer: ScoringViewer) async throws -> QuizSummary {
    let quiz = try await Self.askQuizService(id) { try await self.quizzes.summary(id: id) }
    try Self.checkVisible(quiz, viewer: viewer)
    return quiz
  }

  private static func askQuizService<T>(_ id: String, _ body: () async throws -> T) async throws -> T {
    do {
      return try await body()
    } catch let error as RPCError where error.code == .notFound {
      throw RPCError(code: .notFound, message: "quiz \(id) not found")
    } catch let error as RPCError where error.code == .deadlineExceeded || error.code == .unavailable {
      // Our wait for the quiz service ran out: to the caller, a dependency is unavailable.
      throw RPCError(code: .unavailable, message: "the quiz service is unavailable: \(error.message)")
    }
  }

  private static func checkVisible(_ quiz: QuizSummary, viewer: ScoringViewer) throws {
    let own = viewer.userID != nil && viewer.userID == quiz.authorID
    guard quiz.state == .published || own || viewer.isAdmin || viewer.isService else {
      throw RPCError(code: .notFound, message: "quiz \(quiz.id) not found")
    }
  }

  // MARK: Reads

  public func getAttempt(request: Scoring_V1_GetAttemptRequest, context: ServerContext) async throws -> Scoring_V1_Attempt {
    let state = try await self.loadVisible(request.id)
    return Self.message(state)
  }

  /// The attempt if the caller is its player, the quiz's author or an admin (NOT_FOUND otherwise).
  func loadVisible(_ id: String) async throws -> AttemptState {
    let viewer = Self.viewer()
    guard let state = try await self.db.read({ uow in try await self.attempts.find(id: id, in: uow) }),
      viewer.isAdmin || viewer.userID == state.started.userID || viewer.userID == state.started.quizAuthorID
    else { throw RPCError(code: .notFound, message: "attempt \(id) not found") }
    return state
  }

  public func listAttempts(request: Scoring_V1_ListAttemptsRequest, context: ServerContext) async throws -> Scoring_V1_ListAttemptsResponse {
    let viewer = Self.viewer()
    let owner: AttemptRepository.Owner
    switch (request.quizID.isEmpty, request.userID.isEmpty) {
    case (false, true):
      if !viewer.isAdmin {
        let quiz = try await self.visibleSummary(request.quizID, viewer: viewer)
        guard viewer.userID == quiz.authorID else { throw RPCError(code: .permissionDenied, message: "only the quiz's author or an admin") }
      }
      owner = .quiz(request.quizID)
    case (true, false):
      guard viewer.isAdmin || viewer.userID == request.userID else {
        throw RPCError(code: .permissionDenied, message: "only that user or an admin")
      }
      if viewer.userID != request.userID { self.audit.record("scoring.attempts.read", target: "user:\(request.userID)") }
      owner = .user(request.userID)
    default:
      throw RPCError(code: .invalidArgument, message: "exactly one of quiz_id and user_id is required")
    }
    let size = request.pageSize <= 0 ? 50 : min(Int(request.pageSize), 500)
    let cursor = try Self.cursor(request.pageToken)
    let rows = try await self.db.read { uow in try await self.attempts.list(owner, limit: size + 1, after: cursor, in: uow) }
    var response = Scoring_V1_ListAttemptsResponse()
    response.attempts = rows.prefix(size).map(Self.message)
    if rows.count > size, let last = rows.prefix(size).last { response.nextPageToken = "\(last.startMs):\(last.id)" }
    return response
  }

  static func cursor(_ token: String) throws -> (startMs: Int64, id: String)? {
    guard !token.isEmpty else { return nil }
    let parts = token.split(separator: ":", maxSplits: 1)
    guard parts.count == 2, let ms = Int64(parts[0]) else { throw RPCError(code: .invalidArgument, message: "bad page_token") }
    return (ms, String(parts[1]))
  }

  public func getUserStats(request: Scoring_V1_GetUserStatsRequest, context: ServerContext) async throws -> Scoring_V1_UserStats {
    let viewer = Self.viewer()
    let userID = request.userID.isEmpty ? (viewer.userID ?? "") : request.userID
    guard viewer.isAdmin || (viewer.userID != nil && viewer.userID == userID) else {
      throw RPCError(code: .permissionDenied, message: "statistics are for the user and admins")
    }
    if viewer.userID != userID { self.audit.record("scoring.stats.read", target: "user:\(userID)") }
    let stats = try await self.db.read { uow in try await self.board.userStats(userID: userID, in: uow) }
    var m = Scoring_V1_UserStats()
    m.userID = userID
    m.attempts = Int32(stats.attempts)
    m.finished = Int32(stats.finished)
    m.totalScore = stats.totalScore
    m.answersGiven = stats.answersGiven
    m.timePlayedMs = stats.timePlayedMs
    m.bestScores = stats.best.sorted { $0.key < $1.key }.map { quizID, best in
      .with {
        $0.quizID = quizID
        $0.score = best.score
        $0.maxScore = best.maxScore
        $0.durationMs = best.durationMs
        $0.attemptID = best.attemptID
      }
    }
    return m
  }

  // MARK: Messages

  static func message(_ state: AttemptState) -> Scoring_V1_Attempt {
    var m = Scoring_V1_Attempt()
    m.id = state.id
    m.quizID = state.started.quizID
    m.userID = state.started.userID
    m.state = state.isFinished ? .finished : .inProgress
    m.score = state.score
    m.maxScore = state.maxScore
    m.startTime = Google_Protobuf_Timestamp(milliseconds: state.started.atMs)
    if let finish = state.finishMs { m.finishTime = Google_Protobuf_Timestamp(milliseconds: finish) }
    m.answers = state.answers.map { a in
      .with {
        $0.questionID = a.questionID
        $0.choiceIds = a.choiceIDs
        $0.text = a.text
        $0.correct = a.correct
        $0.points = a.points
        $0.late = a.late
        $0.answerTime = Google_Protobuf_Timestamp(milliseconds: a.atMs)
      }
    }
    m.currentIndex = Int32(state.currentIndex)
    m.questionCount = Int32(state.started.questions.count)
    return m
  }

  static func message(_ row: AttemptRow) -> Scoring_V1_Attempt {
    var m = Scoring_V1_Attempt()
    m.id = row.id
    m.quizID = row.quizID
    m.userID = row.userID
    m.state = row.finished ? .finished : .inProgress
    m.score = Int32(row.score)
    m.maxScore = Int32(row.maxScore)
    m.startTime = Google_Protobuf_Timestamp(milliseconds: row.startMs)
    if let finish = row.finishMs { m.finishTime = Google_Protobuf_Timestamp(milliseconds: finish) }
    m.currentIndex = Int32(row.currentIndex)
    m.questionCount = Int32(row.questionCount)
    return m
  }

  /// Server-assigned ids: a prefix and 128 random bits (base32, lowercase).
  static func newID(_ prefix: String) -> String {
    var rng = SystemRandomNumberGenerator()
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
    return prefix + String((0..<26).map { _ in alphabet[Int(rng.next() % 32)] })
  }
}
