import Foundation

/// One question's outcome in an attempt.
public struct ScoredAnswer: Sendable, Hashable {
  public var questionID: String
  public var choiceIDs: [String]
  public var text: String
  public var correct: Bool
  public var points: Int32
  /// Recorded after the deadline, timed out, or never given (finished before it).
  public var late: Bool
  public var atMs: Int64
  /// The player answered (as opposed to a time-out or a question never reached).
  public var given = false
}

/// An attempt folded from its events. Deadline rule: question 0 is shown at the start, each
/// next one when the previous was recorded (answered, answered late, or timed out), and each
/// has the quiz's time limit from then. A record after its question's deadline scores 0;
/// a second record for a question keeps the first; a record for a question that isn't
/// current is ignored (writers only append for the current one).
public struct AttemptState: Sendable, Hashable {
  public var started: AttemptEvent.Started
  public var answers: [ScoredAnswer] = []
  public var finishMs: Int64?
  /// The number of events folded (the next event's sequence number is `seq + 1`).
  public var seq: Int64 = 0
  /// When the current question was shown.
  public var currentShownMs: Int64

  public var id: String { self.started.attemptID }
  public var isFinished: Bool { self.finishMs != nil }
  public var score: Int32 { self.answers.reduce(0) { $0 + $1.points } }
  public var maxScore: Int32 { ScoringRules.maxScore(self.started.questions) }
  /// The index of the question to answer now (== question count once all are recorded).
  public var currentIndex: Int { self.answers.count }
  public var currentQuestion: QuestionKey? {
    self.isFinished || self.currentIndex >= self.started.questions.count ? nil : self.started.questions[self.currentIndex]
  }
  /// The current question's deadline (nil when none is current).
  public var currentDeadlineMs: Int64? {
    self.currentQuestion == nil ? nil : self.currentShownMs + self.started.timeLimitMs
  }
  public var durationMs: Int64? { self.finishMs.map { $0 - self.started.atMs } }
  /// Answers the player gave (late ones included; time-outs not): a play counter.
  public var answersGiven: Int64 { Int64(self.answers.count { $0.given }) }
  /// Time from the start to the last recorded question (answer or time-out): a play counter.
  public var playedMs: Int64 { self.currentShownMs - self.started.atMs }
  /// The last deadline of the attempt if nobody answers from now on.
  public var lastDeadlineMs: Int64 {
    let remaining = Int64(self.started.questions.count - self.currentIndex)
    return self.currentShownMs + remaining * self.started.timeLimitMs
  }

  public init(started: AttemptEvent.Started) {
    self.started = started
    self.currentShownMs = started.atMs
    self.seq = 1
  }

  /// Folds a whole log (the first event must be `started`).
  public static func fold(_ events: [AttemptEvent]) throws -> AttemptState {
    guard let first = events.first else { throw AttemptFoldError.emptyLog }
    guard case .started(let started) = first else { throw AttemptFoldError.notStartedFirst }
    var state = AttemptState(started: started)
    for event in events.dropFirst() { state.apply(event) }
    return state
  }

  public mutating func apply(_ event: AttemptEvent) {
    self.seq += 1
    switch event {
    case .started:
      return
    case .answerRecorded(let record):
      guard let question = self.currentQuestion, question.id == record.questionID, let deadline = self.currentDeadlineMs else { return }
      let late = record.timedOut || record.atMs > deadline
      let points = late ? 0 : ScoringRules.points(question, choiceIDs: record.choiceIDs, text: record.text)
      let correct = !late && ScoringRules.isCorrect(question, choiceIDs: record.choiceIDs, text: record.text)
      self.answers.append(
        ScoredAnswer(
          questionID: question.id, choiceIDs: record.choiceIDs, text: record.text, correct: correct, points: points, late: late,
          atMs: record.atMs, given: !record.timedOut))
      self.currentShownMs = record.atMs
    case .finished(let finished):
      guard !self.isFinished else { return }
      // Questions never recorded score 0.
      for question in self.started.questions.dropFirst(self.answers.count) {
        self.answers.append(ScoredAnswer(questionID: question.id, choiceIDs: [], text: "", correct: false, points: 0, late: true, atMs: finished.atMs))
      }
      self.finishMs = finished.atMs
    }
  }

  /// The events that bring the attempt up to `nowMs`: a time-out record (at its deadline) for
  /// every question whose deadline passed unanswered, then `finished` once none is left (at
  /// the last record's time). Appending them before acting keeps the log explicit, so a
  /// resumed or abandoned attempt folds the same everywhere.
  public func catchUp(nowMs: Int64) -> [AttemptEvent] {
    var state = self
    var events: [AttemptEvent] = []
    while let question = state.currentQuestion, let deadline = state.currentDeadlineMs, deadline < nowMs {
      let event = AttemptEvent.answerRecorded(.init(questionID: question.id, timedOut: true, atMs: deadline))
      state.apply(event)
      events.append(event)
    }
    if !state.isFinished, state.currentQuestion == nil {
      events.append(.finished(.init(atMs: state.currentShownMs)))
    }
    return events
  }

  /// A leaderboard candidate, once finished.
  public var result: LeaderboardResult? {
    guard let finishMs = self.finishMs else { return nil }
    return LeaderboardResult(
      attemptID: self.id, userID: self.started.userID, score: self.score, maxScore: self.maxScore,
      durationMs: finishMs - self.started.atMs, finishMs: finishMs)
  }
}
