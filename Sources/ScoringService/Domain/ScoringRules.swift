import Foundation

/// What scoring needs of one question, snapshotted when an attempt starts: a later edit of
/// the quiz never changes a running attempt.
public struct QuestionKey: Sendable, Hashable, Codable {
  public enum Kind: String, Sendable, Hashable, Codable {
    case singleChoice, multipleChoice, trueFalse, shortText
  }
  public var id: String
  public var kind: Kind
  public var points: Int32
  public var correctChoiceIDs: [String]
  public var acceptedTexts: [String]

  public init(id: String, kind: Kind, points: Int32, correctChoiceIDs: [String] = [], acceptedTexts: [String] = []) {
    self.id = id
    self.kind = kind
    self.points = points
    self.correctChoiceIDs = correctChoiceIDs
    self.acceptedTexts = acceptedTexts
  }
}

/// The scoring rules. A question scores its points when fully correct, else 0; no time bonus.
public enum ScoringRules {
  /// Choice questions are all-or-nothing: the set of chosen ids must equal the set of correct
  /// ones (order and repeats don't matter). Short text matches an accepted text
  /// case-insensitively after trimming and collapsing whitespace.
  public static func isCorrect(_ key: QuestionKey, choiceIDs: [String], text: String) -> Bool {
    switch key.kind {
    case .singleChoice, .multipleChoice, .trueFalse:
      return !key.correctChoiceIDs.isEmpty && Set(choiceIDs) == Set(key.correctChoiceIDs)
    case .shortText:
      let given = self.normalizedText(text)
      guard !given.isEmpty else { return false }
      return key.acceptedTexts.contains { self.normalizedText($0) == given }
    }
  }

  /// Points scored by an answer given in time.
  public static func points(_ key: QuestionKey, choiceIDs: [String], text: String) -> Int32 {
    self.isCorrect(key, choiceIDs: choiceIDs, text: text) ? key.points : 0
  }

  /// Lowercased, trimmed, inner runs of whitespace collapsed to one space.
  public static func normalizedText(_ text: String) -> String {
    text.lowercased().split(whereSeparator: { $0.isWhitespace || $0.isNewline }).joined(separator: " ")
  }

  /// The sum of the questions' points.
  public static func maxScore(_ keys: [QuestionKey]) -> Int32 {
    keys.reduce(0) { $0 + $1.points }
  }
}

/// One leaderboard candidate: a finished attempt's result.
public struct LeaderboardResult: Sendable, Hashable, Codable {
  public var attemptID: String
  public var userID: String
  public var score: Int32
  public var maxScore: Int32
  public var durationMs: Int64
  public var finishMs: Int64

  public init(attemptID: String, userID: String, score: Int32, maxScore: Int32, durationMs: Int64, finishMs: Int64) {
    self.attemptID = attemptID
    self.userID = userID
    self.score = score
    self.maxScore = maxScore
    self.durationMs = durationMs
    self.finishMs = finishMs
  }

  /// Leaderboard order: higher score, then shorter duration, then earlier finish (then the
  /// attempt id, so the order is total).
  public static func ranksBefore(_ a: LeaderboardResult, _ b: LeaderboardResult) -> Bool {
    if a.score != b.score { return a.score > b.score }
    if a.durationMs != b.durationMs { return a.durationMs < b.durationMs }
    if a.finishMs != b.finishMs { return a.finishMs < b.finishMs }
    return a.attemptID < b.attemptID
  }
}
