import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage
import SwiftProtobuf
import W3CTraceContext

/// A quiz write, told to the service's `QuizChangeObserver` (caches, the cross-replica
/// notifier); the outbox has its event already.
public struct QuizChange: Sendable, Hashable {
  public enum Kind: String, Sendable, Hashable {
    case created, changed, published, unpublished, archived, deleted
  }
  public var kind: Kind
  public var id: String
  public var etag: String
  public var authorID: String
  /// Whether the quiz may have entered or left some list (every list page is suspect then).
  /// A field lists filter on (title, tags) changed: the quiz may now match pages it was not
  /// on. (Moves in `update_time` order are left to the cache's TTL: every write is one.)
  public var listFieldsChanged = false
  public var membershipChanged: Bool { self.kind != .changed || self.listFieldsChanged }
}

/// Hears about every quiz write twice: inside its unit of work (`pending`: work that must
/// commit or roll back with it, e.g. a PostgreSQL NOTIFY) and after the commit (`committed`:
/// dropping this replica's cache entries).
public protocol QuizChangeObserver: Sendable {
  func pending(_ change: QuizChange, in uow: UnitOfWork) async throws
  func committed(_ change: QuizChange) async
}

/// `quiz.v1.QuizService`. Who may do what is decided by `QuizAccess` alone; input rules live in
/// QuizValidation.swift; errors carry their own status (`QuizError`). Reads, writes, questions
/// and the streams are split over the `QuizService+…` files.
public struct QuizService: Quiz_V1_QuizService.SimpleServiceProtocol {
  let db: Database
  let quizzes: QuizRepository
  let logger: Logger
  let audit: AuditLog
  /// Epoch milliseconds; tests pass a fixed clock.
  let now: @Sendable () -> Int64
  /// Told about every write (caches, cross-replica invalidation); nil: nobody listens.
  let observer: (any QuizChangeObserver)?
  /// Cache-aside for what anonymous callers read (published quizzes, list pages); nil: none.
  let cache: QuizCache?
  /// How many quizzes an export reads per query (its memory bound).
  let exportBatch: Int
  /// Signs and checks list page tokens (one key for every replica).
  let tokens: PageTokenCodec
  /// Authors' public display names (auth's BatchGetUsers), asked at CreateQuiz.
  let authors: any AuthorDirectory

  public init(
    db: Database, tokens: PageTokenCodec, authors: any AuthorDirectory, logger: Logger, audit: AuditLog = .disabled,
    quizzes: QuizRepository = QuizRepository(),
    now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) },
    exportBatch: Int = 100, cache: QuizCache? = nil, observer: (any QuizChangeObserver)? = nil
  ) {
    self.db = db
    self.quizzes = quizzes
    self.tokens = tokens
    self.authors = authors
    self.logger = logger
    self.audit = audit
    self.now = now
    self.exportBatch = exportBatch
    self.cache = cache
    // The cache hears about every write unless another observer is given.
    self.observer = observer ?? cache
  }

  /// Who may call what: reads are public (what each caller sees is QuizAccess's business),
  /// writes need a principal holding `quiz:write` when it acts within scopes, answer keys are
  /// for the suite's services.
  public static var policies: AccessPolicies {
    typealias M = Quiz_V1_QuizService.Method
    let write = AccessPolicy.scope("quiz:write")
    return AccessPolicies(
      [
        M.GetQuiz.descriptor: .public, M.ListQuizzes.descriptor: .public, M.BatchGetQuizzes.descriptor: .public,
        M.ExportQuizzes.descriptor: .public,
        M.CreateQuiz.descriptor: write, M.UpdateQuiz.descriptor: write, M.DeleteQuiz.descriptor: write,
        M.PublishQuiz.descriptor: write, M.UnpublishQuiz.descriptor: write, M.ArchiveQuiz.descriptor: write,
        M.AddQuestion.descriptor: write, M.UpdateQuestion.descriptor: write, M.RemoveQuestion.descriptor: write,
        M.ReorderQuestions.descriptor: write, M.ImportQuestions.descriptor: write,
        M.GetAnswerKey.descriptor: .servicesOnly,
      ], fallback: .authenticated)
  }

  /// The caller as QuizAccess sees it. `quiz:write` implies `quiz:read`: a key that may edit
  /// its owner's drafts may see them.
  static func viewer() -> QuizViewer {
    guard let principal = ServiceContext.current?.call?.principal else { return .anonymous }
    let write = principal.allows(scope: "quiz:write")
    return QuizViewer(
      userID: principal.userID, isAdmin: principal.roles.contains("admin"), isService: principal.kind == .service,
      mayReadPrivate: write || principal.allows(scope: "quiz:read"), mayWrite: write)
  }

  // MARK: Writes, shared

  /// What a write did, beyond changing the row.
  struct WriteEffect {
    var replaceTags = false
    var replaceQuestions = false
    /// Nothing changed (publishing a published quiz): no write, no event, same etag.
    var unchanged = false
    var kind: QuizChange.Kind = .changed
    /// Title or tags changed (see `QuizChange.listFieldsChanged`).
    var listFieldsChanged = false
    /// Enqueue `quiz.recompute_stats` for the quiz in the write's unit of work (bulk imports).
    var recomputeStatistics = false
  }

  /// Loads quiz `id` for writing, checks access and the etag, applies `change`, writes it if
  /// the etag is still current, appends the outbox events, all in one unit of work; then tells
  /// the observer.
  func write(
    id: String, etag: String, load: QuizLoad, _ change: (inout QuizRecord) throws -> WriteEffect
  ) async throws -> QuizRecord {
    let viewer = Self.viewer()
    let (quiz, effect) = try await self.db.transaction { uow in
      guard let current = try await self.quizzes.find(id: id, load: load, forUpdate: true, in: uow) else { throw QuizError.notFound(id) }
      // Access first: a stranger learns nothing about the etag of a quiz it can't see.
      try QuizAccess.checkWrite(current, by: viewer)
      if !etag.isEmpty && etag != current.etag { throw QuizError.etagMismatch(id: id) }
      var next = current
      let effect = try change(&next)
      if effect.unchanged { return (current, effect) }
      next.touch(nowMs: self.now())
      let written = try await self.quizzes.update(
        next, expectedEtag: current.etag, replaceTags: effect.replaceTags, replaceQuestions: effect.replaceQuestions, in: uow)
      // The row moved on between our read and the write (PostgreSQL without the row lock
      // taken, or a concurrent writer on another replica): the caller's view is stale.
      guard written else { throw QuizError.etagMismatch(id: id) }
      // Before the outbox append, which serializes appenders until commit.
      if effect.recomputeStatistics { try await QuizJobs.enqueueRecompute(quizID: next.id, in: uow) }
      try await self.recordChange(next, kind: effect.kind, listFieldsChanged: effect.listFieldsChanged, in: uow)
      return (next, effect)
    }
    if !effect.unchanged {
      await self.observer?.committed(
        QuizChange(kind: effect.kind, id: quiz.id, etag: quiz.etag, authorID: quiz.authorID, listFieldsChanged: effect.listFieldsChanged))
    }
    return quiz
  }

  /// In the write's unit of work: the outbox events (`quiz.changed` for every write, plus
  /// `quiz.published` / `quiz.deleted` for those) and the observer's part.
  func recordChange(_ quiz: QuizRecord, kind: QuizChange.Kind, listFieldsChanged: Bool = false, in uow: UnitOfWork) async throws {
    let change = QuizChange(kind: kind, id: quiz.id, etag: quiz.etag, authorID: quiz.authorID, listFieldsChanged: listFieldsChanged)
    try await self.observer?.pending(change, in: uow)
    var types = ["quiz.changed"]
    if kind == .published { types.append("quiz.published") }
    if kind == .deleted { types.append("quiz.deleted") }
    let payload = try Self.changedPayload(quiz, change: kind.rawValue)
    let trace = ServiceContext.current?.traceContext?.traceParentHeaderValue
    for type in types {
      try await Outbox.append(
        type: type, key: quiz.id, keyVersion: quiz.updateTimeMs, payload: payload, traceContext: trace, timeMs: quiz.updateTimeMs, in: uow)
    }
  }

  /// The `quiz.v1.QuizChanged` payload of the quiz's events.
  static func changedPayload(_ quiz: QuizRecord, change: String) throws -> Data {
    var changed = Quiz_V1_QuizChanged()
    changed.quizID = quiz.id
    changed.etag = quiz.etag
    changed.authorID = quiz.authorID
    changed.state = quiz.state.proto
    changed.change = change
    return try changed.serializedBytes()
  }

  // MARK: Messages

  /// The quiz as a caller may see it: answer keys only when `answerKeys`, then the read mask.
  static func message(_ quiz: QuizRecord, answerKeys: Bool, mask: QuizReadMask = .all) -> Quiz_V1_Quiz {
    var m = Quiz_V1_Quiz()
    m.id = quiz.id
    m.authorID = quiz.authorID
    m.authorDisplayName = quiz.authorDisplayName
    m.title = quiz.title
    m.description_p = quiz.description
    m.tags = quiz.tags
    m.state = quiz.state.proto
    if let questions = quiz.questions {
      m.questions =
        answerKeys
        ? questions
        : questions.map { q in
          var q = q
          q.clearAnswerKey()
          return q
        }
    }
    m.questionTimeLimitSeconds = Int32(quiz.questionTimeLimitSeconds)
    m.questionCount = Int32(quiz.questionCount)
    m.etag = quiz.etag
    m.createTime = timestamp(quiz.createTimeMs)
    m.updateTime = timestamp(quiz.updateTimeMs)
    if let deleted = quiz.deletedTimeMs { m.deleteTime = timestamp(deleted) }
    m.playCount = quiz.plays.count
    m.averageScore = quiz.plays.averageScore
    m.averageScoreFraction = quiz.plays.averageFraction
    mask.apply(to: &m)
    return m
  }

  static func timestamp(_ ms: Int64) -> Google_Protobuf_Timestamp {
    Google_Protobuf_Timestamp(seconds: ms / 1000, nanos: Int32(ms % 1000) * 1_000_000)
  }

  /// Server-assigned ids: a prefix and 128 random bits (base32, lowercase).
  static func newID(_ prefix: String) -> String {
    var rng = SystemRandomNumberGenerator()
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
    return prefix + String((0..<26).map { _ in alphabet[Int(rng.next() % 32)] })
  }
}
