import Foundation
import GRPCCore
import QuizwireProtos
import ServiceKit
import Synchronization

/// What scoring knows of a quiz: enough to decide visibility and to snapshot an attempt.
public struct QuizSnapshot: Sendable, Hashable {
  public var id: String
  public var authorID: String
  public var state: Quiz_V1_QuizState
  public var etag: String
  public var timeLimitMs: Int64
  /// Without answer keys (what players are shown).
  public var questions: [Quiz_V1_Question]
  public var keys: [QuestionKey]
}

/// Who may see a quiz's board and attempts: its author and state.
public struct QuizSummary: Sendable, Hashable {
  public var id: String
  public var authorID: String
  public var state: Quiz_V1_QuizState
}

/// Where scoring reads quizzes: the quiz service (GetQuiz + GetAnswerKey) as this service's own
/// principal. Throws NOT_FOUND for a quiz that doesn't exist (or was deleted).
public protocol QuizSource: Sendable {
  /// The quiz as it is now, with its answer key (starting an attempt).
  func quiz(id: String) async throws -> QuizSnapshot
  /// Author and state, possibly cached until the quiz's next event (leaderboard reads).
  func summary(id: String) async throws -> QuizSummary
  /// Which of `ids` (at most 100) no longer exist (deleted) — a resync of `quiz.deleted`.
  func missing(ids: [String]) async throws -> [String]
  /// Forget what is cached for `id` (quiz.changed / quiz.deleted).
  func invalidate(id: String)
  func invalidateAll()
}

/// The quiz service over the suite's wire. Answer keys are cached per quiz etag: GetQuiz tells
/// the current etag, GetAnswerKey is only called when it changed (or after `invalidate`).
public final class RemoteQuizSource<Transport: ClientTransport>: QuizSource {
  let client: Quiz_V1_QuizService.Client<Transport>
  /// Answer keys by "<quiz id> <etag>", tagged with the quiz id; hits and misses on /metrics
  /// (`cache_hits_total{cache="scoring.answer_keys"}`). An etag's keys never change, so the
  /// TTL only bounds how long a quiz nobody plays stays in memory.
  public let keys: ResponseCache<String, [QuestionKey]>
  /// Author and state by quiz id for leaderboard and attempt reads, dropped on every event of
  /// the quiz (`invalidate`); the TTL bounds staleness if the quiz feed is away.
  public let summaries = ResponseCache<String, QuizSummary>(
    name: "scoring.quiz_summaries", limits: .init(maxEntries: 10_000, maxBytes: 8 << 20, ttl: .seconds(30)))
  /// Concurrent misses of one quiz share one GetQuiz (1,000 watchers arriving at once).
  private let inFlight = Mutex<[String: Task<QuizSummary, any Error>]>([:])

  /// `client` calls with this service's client-credentials token (`ModuleContext.client(for:)`).
  public init(
    client: GRPCClient<Transport>,
    limits: ResponseCache<String, [QuestionKey]>.Limits = .init(maxEntries: 10_000, maxBytes: 64 << 20, ttl: .seconds(3600))
  ) {
    self.client = Quiz_V1_QuizService.Client(wrapping: client)
    self.keys = ResponseCache(name: "scoring.answer_keys", limits: limits)
  }

  public func summary(id: String) async throws -> QuizSummary {
    if let cached = self.summaries.value(for: id) { return cached }
    let ticket = self.summaries.ticket()
    let (task, owner) = self.inFlight.withLock { inFlight -> (Task<QuizSummary, any Error>, Bool) in
      if let running = inFlight[id] { return (running, false) }
      let task = Task {
        let quiz = try await self.client.getQuiz(.with { $0.id = id }, options: Self.callOptions)
        return QuizSummary(id: quiz.id, authorID: quiz.authorID, state: quiz.state)
      }
      inFlight[id] = task
      return (task, true)
    }
    defer { if owner { self.inFlight.withLock { $0[id] = nil } } }
    let summary = try await task.value
    if owner { _ = self.summaries.insert(summary, for: id, bytes: 64 + id.utf8.count + summary.authorID.utf8.count, tags: [id], ticket: ticket) }
    return summary
  }

  public func missing(ids: [String]) async throws -> [String] {
    let answer = try await self.client.batchGetQuizzes(
      .with {
        $0.ids = ids
        $0.readMask = .init(protoPaths: ["id"])
      }, options: Self.callOptions)
    return answer.missingIds
  }

  public func quiz(id: String) async throws -> QuizSnapshot {
    let quiz = try await self.client.getQuiz(.with { $0.id = id }, options: Self.callOptions)
    let cacheKey = "\(id) \(quiz.etag)"
    var keys = self.keys.value(for: cacheKey)
    if keys == nil {
      let ticket = self.keys.ticket()
      let answer = try await self.client.getAnswerKey(.with { $0.quizID = id }, options: Self.callOptions)
      let fetched = answer.answerKeys.map(Self.key)
      // Only keys of the quiz as read are kept (an edit in between: the next call refetches);
      // an invalidation since the ticket refuses the insert.
      if answer.etag == quiz.etag {
        let bytes = fetched.reduce(64) { $0 + 64 + $1.id.utf8.count + $1.correctChoiceIDs.joined().utf8.count + $1.acceptedTexts.joined().utf8.count }
        _ = self.keys.insert(fetched, for: cacheKey, bytes: bytes, tags: [id], ticket: ticket)
      }
      keys = fetched
    }
    return QuizSnapshot(
      id: quiz.id, authorID: quiz.authorID, state: quiz.state, etag: quiz.etag,
      timeLimitMs: Int64(max(quiz.questionTimeLimitSeconds, 1)) * 1000,
      questions: quiz.questions.map { q in
        var q = q
        q.clearAnswerKey()
        return q
      }, keys: keys ?? [])
  }

  /// A start waits at most this long for the quiz service (its client's default is 10 s).
  static var callOptions: CallOptions {
    var options = CallOptions.defaults
    options.timeout = .seconds(3)
    return options
  }

  public func invalidate(id: String) {
    _ = self.keys.invalidate(tag: id)
    _ = self.summaries.invalidate(tag: id)
  }
  public func invalidateAll() {
    self.keys.flushAll()
    self.summaries.flushAll()
  }

  static func key(_ k: Quiz_V1_QuestionAnswerKey) -> QuestionKey {
    let kind: QuestionKey.Kind =
      switch k.kind {
      case .multipleChoice: .multipleChoice
      case .trueFalse: .trueFalse
      case .shortText: .shortText
      default: .singleChoice
      }
    return QuestionKey(
      id: k.questionID, kind: kind, points: k.points, correctChoiceIDs: k.answerKey.correctChoiceIds, acceptedTexts: k.answerKey.acceptedTexts)
  }
}
