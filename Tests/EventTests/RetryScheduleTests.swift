import ServiceKit
import XCTest

/// The consumer's per-event retry policy, without a feed or a clock.
final class RetryScheduleTests: XCTestCase {
  func testDoublesUpToTheMaximumThenParks() {
    let schedule = RetrySchedule(initial: .milliseconds(100), maximum: .milliseconds(350), attempts: 4)
    XCTAssertEqual(schedule.decision(afterFailure: 1), .retry(after: .milliseconds(100)))
    XCTAssertEqual(schedule.decision(afterFailure: 2), .retry(after: .milliseconds(200)))
    XCTAssertEqual(schedule.decision(afterFailure: 3), .retry(after: .milliseconds(350)), "capped")
    XCTAssertEqual(schedule.decision(afterFailure: 4), .park, "four tries in all")
    XCTAssertEqual(schedule.decision(afterFailure: 9), .park)
    XCTAssertEqual(schedule.delay(afterFailure: 1_000), .milliseconds(350), "no overflow far out")
  }

  func testAtLeastOneTry() {
    XCTAssertEqual(RetrySchedule(attempts: 0).decision(afterFailure: 1), .park)
    XCTAssertEqual(RetrySchedule(attempts: .max).decision(afterFailure: 50), .retry(after: .seconds(5)))
  }
}
