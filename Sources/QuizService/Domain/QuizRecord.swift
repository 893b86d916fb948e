import Crypto
import Foundation
import QuizwireProtos

/// A quiz's lifecycle state, stored as its name ("DRAFT", "PUBLISHED", "ARCHIVED").
public enum QuizState: String, Sendable, Hashable, CaseIterable {
  case draft = "DRAFT"
  case published = "PUBLISHED"
  case archived = "ARCHIVED"

  public init?(_ proto: Quiz_V1_QuizState) {
    switch proto {
    case .draft: self = .draft
    case .published: self = .published
    case .archived: self = .archived
    default: return nil
    }
  }

  public var proto: Quiz_V1_QuizState {
    switch self {
    case .draft: .draft
    case .published: .published
    case .archived: .archived
    }
  }
}

/// A stored quiz. `questions` is nil when they were not loaded (a read mask without
/// `questions`); `questionCount` is always known.
public struct QuizRecord: Sendable, Hashable {
  public var id: String
  public var authorID: String
  public var title: String
  public var description: String
  /// Sorted, unique.
  public var tags: [String]
  public var state: QuizState
  public var questionTimeLimitSeconds: Int
  public var questionCount: Int
  public var etag: String
  public var createTimeMs: Int64
  public var updateTimeMs: Int64
  public var deletedTimeMs: Int64?
  /// In position order; each carries its answer key (redacted only when serialized for a caller).
  public var questions: [Quiz_V1_Question]?
  /// The author's public display name (from the auth service, never from an email); not
  /// content: it changes with the author's renames, without touching the etag.
  public var authorDisplayName: String
  /// The author's profile version that name is from (0: not filled yet).
  public var authorNameVersion: Int64
  /// Finished attempts counted from scoring's `attempt.finished` (not content: no etag change).
  public var plays: QuizPlays

  public init(
    id: String, authorID: String, title: String, description: String, tags: [String], state: QuizState,
    questionTimeLimitSeconds: Int, questionCount: Int, etag: String, createTimeMs: Int64, updateTimeMs: Int64,
    deletedTimeMs: Int64? = nil, questions: [Quiz_V1_Question]? = nil, authorDisplayName: String = "", authorNameVersion: Int64 = 0,
    plays: QuizPlays = QuizPlays()
  ) {
    self.plays = plays
    self.authorDisplayName = authorDisplayName
    self.authorNameVersion = authorNameVersion
    self.id = id
    self.authorID = authorID
    self.title = title
    self.description = description
    self.tags = tags
    self.state = state
    self.questionTimeLimitSeconds = questionTimeLimitSeconds
    self.questionCount = questionCount
    self.etag = etag
    self.createTimeMs = createTimeMs
    self.updateTimeMs = updateTimeMs
    self.deletedTimeMs = deletedTimeMs
    self.questions = questions
  }

  public var isDeleted: Bool { self.deletedTimeMs != nil }

  /// The columns lists order by, for the next page token.
  public var sortKey: QuizSortKey {
    QuizSortKey(id: self.id, createTimeMs: self.createTimeMs, updateTimeMs: self.updateTimeMs, title: self.title)
  }

  /// Records a content write at `nowMs`: the update time strictly increases per quiz (it is
  /// also the outbox's key version, which must grow with every change) and the etag changes.
  public mutating func touch(nowMs: Int64) {
    self.updateTimeMs = max(nowMs, self.updateTimeMs + 1)
    if let questions { self.questionCount = questions.count }
    self.etag = QuizEtag.next(after: self.etag, quiz: self)
  }
}

/// A quiz's play statistics: sums kept by the `quiz.play-stats` consumer, averages derived.
public struct QuizPlays: Sendable, Hashable {
  public var count: Int64
  /// Total score and total `max_score` of the counted attempts, in points.
  public var scoreSum: Int64
  public var maxScoreSum: Int64

  public init(count: Int64 = 0, scoreSum: Int64 = 0, maxScoreSum: Int64 = 0) {
    self.count = count
    self.scoreSum = scoreSum
    self.maxScoreSum = maxScoreSum
  }

  /// Mean score in points; 0 without plays.
  public var averageScore: Double { self.count > 0 ? Double(self.scoreSum) / Double(self.count) : 0 }
  /// Total score over total maximum, 0...1; 0 without plays (or with a 0 maximum).
  public var averageFraction: Double { self.maxScoreSum > 0 ? Double(self.scoreSum) / Double(self.maxScoreSum) : 0 }
}

/// Entity tags: a hash chained over the previous tag, the update time and the content, so
/// every content write yields a new tag (even one that restores earlier content: an A→B→A
/// edit must still fail a writer holding A's tag) and the same write always the same tag.
public enum QuizEtag {
  public static func next(after previous: String, quiz: QuizRecord) -> String {
    var hasher = SHA256()
    func add(_ text: String) {
      hasher.update(data: Data(text.utf8))
      hasher.update(data: [0])
    }
    add(previous)
    add(quiz.id)
    add(String(quiz.updateTimeMs))
    add(quiz.title)
    add(quiz.description)
    add(quiz.tags.joined(separator: ","))
    add(quiz.state.rawValue)
    add(String(quiz.questionTimeLimitSeconds))
    for question in quiz.questions ?? [] {
      hasher.update(data: (try? question.serializedBytes() as [UInt8]) ?? [])
    }
    return hasher.finalize().prefix(16).map { String(format: "%02x", $0) }.joined()
  }

  /// The tag of a quiz written for the first time.
  public static func initial(_ quiz: QuizRecord) -> String { self.next(after: "", quiz: quiz) }
}
