import XCTest

@testable import ScoringService

/// The scoring rules for every question kind and the attempt fold: deadlines, late answers,
/// duplicates, time-outs, finishing.
final class AttemptFoldTests: XCTestCase {
  static let keys = [
    QuestionKey(id: "q1", kind: .singleChoice, points: 1, correctChoiceIDs: ["a"]),
    QuestionKey(id: "q2", kind: .multipleChoice, points: 3, correctChoiceIDs: ["a", "c"]),
    QuestionKey(id: "q3", kind: .trueFalse, points: 2, correctChoiceIDs: ["true"]),
    QuestionKey(id: "q4", kind: .shortText, points: 5, acceptedTexts: ["Grace  Hopper", "hopper"]),
  ]

  static func started(at ms: Int64 = 1_000, limit: Int64 = 10_000) -> AttemptEvent.Started {
    AttemptEvent.Started(
      attemptID: "at_1", quizID: "qz_1", userID: "u1", quizAuthorID: "author", quizEtag: "e1", timeLimitMs: limit,
      questions: keys, atMs: ms)
  }

  static func answer(_ id: String, _ choices: [String] = [], text: String = "", at ms: Int64) -> AttemptEvent {
    .answerRecorded(.init(questionID: id, choiceIDs: choices, text: text, atMs: ms))
  }

  func testChoiceQuestionsAreAllOrNothing() {
    let single = Self.keys[0]
    XCTAssertTrue(ScoringRules.isCorrect(single, choiceIDs: ["a"], text: ""))
    XCTAssertFalse(ScoringRules.isCorrect(single, choiceIDs: ["b"], text: ""))
    XCTAssertFalse(ScoringRules.isCorrect(single, choiceIDs: ["a", "b"], text: ""), "an extra choice is wrong")
    XCTAssertFalse(ScoringRules.isCorrect(single, choiceIDs: [], text: ""))
    let multiple = Self.keys[1]
    XCTAssertEqual(ScoringRules.points(multiple, choiceIDs: ["c", "a"], text: ""), 3, "order doesn't matter")
    XCTAssertEqual(ScoringRules.points(multiple, choiceIDs: ["a", "c", "a"], text: ""), 3, "repeats don't matter")
    XCTAssertEqual(ScoringRules.points(multiple, choiceIDs: ["a"], text: ""), 0, "partly correct scores nothing")
    XCTAssertEqual(ScoringRules.points(multiple, choiceIDs: ["a", "b", "c"], text: ""), 0)
    let trueFalse = Self.keys[2]
    XCTAssertEqual(ScoringRules.points(trueFalse, choiceIDs: ["true"], text: ""), 2)
    XCTAssertEqual(ScoringRules.points(trueFalse, choiceIDs: ["false"], text: ""), 0)
    XCTAssertFalse(ScoringRules.isCorrect(QuestionKey(id: "x", kind: .singleChoice, points: 1), choiceIDs: [], text: ""), "no key: never correct")
  }

  func testShortTextIgnoresCaseAndWhitespace() {
    let key = Self.keys[3]
    XCTAssertTrue(ScoringRules.isCorrect(key, choiceIDs: [], text: "  grace\t hopper \n"))
    XCTAssertTrue(ScoringRules.isCorrect(key, choiceIDs: [], text: "HOPPER"))
    XCTAssertFalse(ScoringRules.isCorrect(key, choiceIDs: [], text: "gracehopper"))
    XCTAssertFalse(ScoringRules.isCorrect(key, choiceIDs: [], text: "   "), "blank is never correct")
    XCTAssertEqual(ScoringRules.normalizedText("  A \t b\n\nC "), "a b c")
    XCTAssertEqual(ScoringRules.maxScore(Self.keys), 11)
  }

  func testAFullAttemptFoldsToItsScore() throws {
    let state = try AttemptState.fold([
      .started(Self.started()),
      Self.answer("q1", ["a"], at: 2_000),
      Self.answer("q2", ["a"], at: 3_000),
      Self.answer("q3", ["true"], at: 4_000),
      Self.answer("q4", text: "Hopper", at: 5_000),
      .finished(.init(atMs: 5_000)),
    ])
    XCTAssertEqual(state.answers.map(\.points), [1, 0, 2, 5])
    XCTAssertEqual(state.answers.map(\.correct), [true, false, true, true])
    XCTAssertEqual(state.score, 8)
    XCTAssertEqual(state.maxScore, 11)
    XCTAssertTrue(state.isFinished)
    XCTAssertEqual(state.durationMs, 4_000)
    XCTAssertEqual(state.seq, 6)
    XCTAssertEqual(state.result?.score, 8)
  }

  func testEachQuestionsDeadlineRunsFromThePreviousRecord() throws {
    var state = try AttemptState.fold([.started(Self.started(at: 1_000, limit: 10_000))])
    XCTAssertEqual(state.currentDeadlineMs, 11_000)
    state.apply(Self.answer("q1", ["a"], at: 4_000))
    XCTAssertEqual(state.currentIndex, 1)
    XCTAssertEqual(state.currentDeadlineMs, 14_000, "the next question is shown when the previous is answered")
    XCTAssertEqual(state.lastDeadlineMs, 34_000)
  }

  func testALateAnswerScoresZeroAndTheNextQuestionFollows() throws {
    let state = try AttemptState.fold([
      .started(Self.started(at: 1_000, limit: 10_000)),
      Self.answer("q1", ["a"], at: 11_001),  // deadline 11_000
      Self.answer("q2", ["a", "c"], at: 12_000),
    ])
    XCTAssertEqual(state.answers.map(\.late), [true, false])
    XCTAssertEqual(state.answers.map(\.points), [0, 3])
    XCTAssertFalse(state.answers[0].correct, "a late right answer is not counted")
    XCTAssertEqual(state.currentIndex, 2)
    let onTime = try AttemptState.fold([.started(Self.started(at: 1_000, limit: 10_000)), Self.answer("q1", ["a"], at: 11_000)])
    XCTAssertEqual(onTime.score, 1, "an answer at the deadline itself is in time")
  }

  func testADuplicateAnswerKeepsTheFirstAndOthersAreIgnored() throws {
    let state = try AttemptState.fold([
      .started(Self.started()),
      Self.answer("q1", ["b"], at: 2_000),
      Self.answer("q1", ["a"], at: 2_100),  // duplicate: the first (wrong) answer stays
      Self.answer("q3", ["true"], at: 2_200),  // not current: ignored
      Self.answer("q2", ["a", "c"], at: 2_300),
    ])
    XCTAssertEqual(state.answers.map(\.questionID), ["q1", "q2"])
    XCTAssertEqual(state.answers.map(\.points), [0, 3])
    XCTAssertEqual(state.answers[0].choiceIDs, ["b"])
    XCTAssertEqual(state.seq, 5, "every event counts for the sequence")
  }

  func testCatchUpTimesOutSilentQuestionsAndFinishes() throws {
    let state = try AttemptState.fold([.started(Self.started(at: 1_000, limit: 10_000)), Self.answer("q1", ["a"], at: 2_000)])
    XCTAssertEqual(state.catchUp(nowMs: 12_000), [], "nothing is due before the deadline")
    let two = state.catchUp(nowMs: 22_001)
    XCTAssertEqual(
      two,
      [
        .answerRecorded(.init(questionID: "q2", timedOut: true, atMs: 12_000)),
        .answerRecorded(.init(questionID: "q3", timedOut: true, atMs: 22_000)),
      ])
    let all = state.catchUp(nowMs: 1_000_000)
    XCTAssertEqual(all.count, 4)
    XCTAssertEqual(all.last, .finished(.init(atMs: 32_000)), "finished at the last deadline")
    var finished = state
    for event in all { finished.apply(event) }
    XCTAssertTrue(finished.isFinished)
    XCTAssertEqual(finished.score, 1)
    XCTAssertEqual(finished.answers.map(\.late), [false, true, true, true])
    XCTAssertEqual(finished.catchUp(nowMs: 2_000_000), [], "a finished attempt needs nothing")
  }

  func testFinishingEarlyScoresTheRestZeroAndAFinishedAttemptIgnoresMore() throws {
    var state = try AttemptState.fold([.started(Self.started()), Self.answer("q1", ["a"], at: 2_000), .finished(.init(atMs: 2_500))])
    XCTAssertEqual(state.answers.count, 4)
    XCTAssertEqual(state.score, 1)
    XCTAssertNil(state.currentQuestion)
    state.apply(.finished(.init(atMs: 9_000)))
    XCTAssertEqual(state.finishMs, 2_500, "the first finish stays")
  }

  func testEventsRoundTripAndTheLogMustStartWithStarted() throws {
    let events: [AttemptEvent] = [.started(Self.started()), Self.answer("q4", text: "x", at: 5), .finished(.init(atMs: 6))]
    for event in events {
      XCTAssertEqual(try AttemptEvent.decode(type: event.type, payload: event.payload()), event)
    }
    XCTAssertThrowsError(try AttemptState.fold([.finished(.init(atMs: 1))]))
    XCTAssertThrowsError(try AttemptState.fold([]))
    XCTAssertThrowsError(try AttemptEvent.decode(type: "nope", payload: Data("{}".utf8)))
  }

  func testLeaderboardOrderBreaksTiesByDurationThenFinish() {
    let a = LeaderboardResult(attemptID: "a", userID: "u1", score: 5, maxScore: 5, durationMs: 100, finishMs: 10)
    let b = LeaderboardResult(attemptID: "b", userID: "u2", score: 5, maxScore: 5, durationMs: 90, finishMs: 20)
    let c = LeaderboardResult(attemptID: "c", userID: "u3", score: 5, maxScore: 5, durationMs: 90, finishMs: 15)
    let d = LeaderboardResult(attemptID: "d", userID: "u4", score: 6, maxScore: 6, durationMs: 900, finishMs: 99)
    let z = LeaderboardResult(attemptID: "z", userID: "u5", score: 0, maxScore: 6, durationMs: 1, finishMs: 1)
    XCTAssertEqual([a, b, c, d, z].sorted(by: LeaderboardResult.ranksBefore).map(\.attemptID), ["d", "c", "b", "a", "z"])
  }
}
