import Foundation

/// The events of one attempt, the source of truth (`attempt_events`): state is folded from
/// them, the read model and projections follow them.
public enum AttemptEvent: Sendable, Hashable {
  case started(Started)
  case answerRecorded(AnswerRecorded)
  case finished(Finished)

  public struct Started: Sendable, Hashable, Codable {
    public var attemptID: String
    public var quizID: String
    public var userID: String
    /// The quiz's author when the attempt started (authors see the attempts on their quizzes).
    public var quizAuthorID: String
    public var quizEtag: String
    public var timeLimitMs: Int64
    public var questions: [QuestionKey]
    public var idempotencyKey: String?
    public var atMs: Int64
    /// The questions as shown to the player (serialized `quiz.v1.Question`s without answer
    /// keys), so a resumed attempt shows what it started with.
    public var shown: [Data]

    public init(
      attemptID: String, quizID: String, userID: String, quizAuthorID: String, quizEtag: String, timeLimitMs: Int64,
      questions: [QuestionKey], idempotencyKey: String? = nil, atMs: Int64, shown: [Data] = []
    ) {
      self.shown = shown
      self.attemptID = attemptID
      self.quizID = quizID
      self.userID = userID
      self.quizAuthorID = quizAuthorID
      self.quizEtag = quizEtag
      self.timeLimitMs = timeLimitMs
      self.questions = questions
      self.idempotencyKey = idempotencyKey
      self.atMs = atMs
    }
  }

  /// An answer to the current question, or (`timedOut`) the server closing it at its deadline
  /// with no answer.
  public struct AnswerRecorded: Sendable, Hashable, Codable {
    public var questionID: String
    public var choiceIDs: [String]
    public var text: String
    public var timedOut: Bool
    public var atMs: Int64

    public init(questionID: String, choiceIDs: [String] = [], text: String = "", timedOut: Bool = false, atMs: Int64) {
      self.questionID = questionID
      self.choiceIDs = choiceIDs
      self.text = text
      self.timedOut = timedOut
      self.atMs = atMs
    }
  }

  public struct Finished: Sendable, Hashable, Codable {
    public var atMs: Int64
    public init(atMs: Int64) { self.atMs = atMs }
  }

  public static let startedType = "attempt.started"
  public static let answerRecordedType = "answer.recorded"
  public static let finishedType = "attempt.finished"

  public var type: String {
    switch self {
    case .started: Self.startedType
    case .answerRecorded: Self.answerRecordedType
    case .finished: Self.finishedType
    }
  }

  public var atMs: Int64 {
    switch self {
    case .started(let e): e.atMs
    case .answerRecorded(let e): e.atMs
    case .finished(let e): e.atMs
    }
  }

  /// The stored payload (JSON, keys sorted so equal events store equal bytes).
  public func payload() throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    switch self {
    case .started(let e): return try encoder.encode(e)
    case .answerRecorded(let e): return try encoder.encode(e)
    case .finished(let e): return try encoder.encode(e)
    }
  }

  public static func decode(type: String, payload: Data) throws -> AttemptEvent {
    let decoder = JSONDecoder()
    switch type {
    case startedType: return .started(try decoder.decode(Started.self, from: payload))
    case answerRecordedType: return .answerRecorded(try decoder.decode(AnswerRecorded.self, from: payload))
    case finishedType: return .finished(try decoder.decode(Finished.self, from: payload))
    default: throw AttemptFoldError.unknownEventType(type)
    }
  }
}

public enum AttemptFoldError: Error, Sendable, Hashable {
  case unknownEventType(String)
  case notStartedFirst
  case emptyLog
}
