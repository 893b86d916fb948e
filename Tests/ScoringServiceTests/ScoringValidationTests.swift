import QuizwireProtos
import ScoringService
import ServiceKit
import XCTest

/// Each request type's input rules without a server: the field paths of the violations.
final class ScoringValidationTests: XCTestCase {
  func fields(_ message: some ValidatableMessage) -> [String] { message.fieldViolations.violations.map(\.field) }

  func testRequestRulesNameTheirFields() {
    XCTAssertEqual(fields(Scoring_V1_StartAttemptRequest()), ["quiz_id"])
    XCTAssertEqual(
      fields(
        Scoring_V1_StartAttemptRequest.with {
          $0.quizID = "qz_1"
          $0.idempotencyKey = String(repeating: "k", count: 201)
        }), ["idempotency_key"])
    XCTAssertEqual(fields(Scoring_V1_StartAttemptRequest.with { $0.quizID = "qz_1" }), [])
    XCTAssertEqual(fields(Scoring_V1_GetAttemptRequest()), ["id"])
    XCTAssertEqual(fields(Scoring_V1_ListAttemptsRequest()), ["quiz_id"])
    XCTAssertEqual(
      fields(
        Scoring_V1_ListAttemptsRequest.with {
          $0.quizID = "q"
          $0.userID = "u"
        }), ["quiz_id"])
    XCTAssertEqual(
      fields(
        Scoring_V1_ListAttemptsRequest.with {
          $0.userID = "u"
          $0.pageSize = -1
        }), ["page_size"])
    XCTAssertEqual(fields(Scoring_V1_GetLeaderboardRequest.with { $0.quizID = "q" }), [])
    XCTAssertEqual(
      fields(
        Scoring_V1_WatchLeaderboardRequest.with {
          $0.quizID = "q"
          $0.topN = 101
        }), ["top_n"])
    XCTAssertEqual(
      fields(
        Scoring_V1_WatchLeaderboardRequest.with {
          $0.quizID = "q"
          $0.topN = 100
        }), [])
  }
}
