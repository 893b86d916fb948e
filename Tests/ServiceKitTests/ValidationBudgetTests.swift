import GRPCCore
import GRPCProtobuf
import XCTest

@testable import ServiceKit

/// A request with hundreds of mistakes still gets INVALID_ARGUMENT: the error lists the first
/// violations up to a budget, so its status fits the call's trailers (16 KiB on our wire)
/// instead of becoming INTERNAL "trailers too large" (found by schemathesis through the gateway).
final class ValidationBudgetTests: XCTestCase {
  func testManyViolationsAreCutToTheBudgetsAndSaySoInTheMessage() throws {
    var v = FieldViolations()
    v.each("questions", Array(0..<2000)) { question, _ in
      question.require(false, "prompt", "is required")
      question.require(false, "kind", "must be SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE or SHORT_TEXT")
    }
    v.add(String(repeating: "f", count: 5000), String(repeating: "d", count: 5000))
    let error = v.error()
    XCTAssertEqual(error.code, .invalidArgument)
    let status = try XCTUnwrap(try error.unpackGoogleRPCStatus())
    let reported = try XCTUnwrap(status.details.first?.badRequest).violations
    XCTAssertGreaterThan(reported.count, 10, "the first violations are still there")
    XCTAssertLessThan(reported.count, 4001)
    XCTAssertEqual(reported.first?.field, "questions[0].prompt")
    XCTAssertEqual(reported.map(\.field), v.violations.prefix(reported.count).map(\.field), "in order, from the first")
    let detailBytes = reported.reduce(0) { $0 + $1.field.utf8.count + $1.violationDescription.utf8.count }
    XCTAssertLessThanOrEqual(detailBytes, FieldViolations.detailBudget)
    XCTAssertLessThanOrEqual(status.message.utf8.count, FieldViolations.messageBudget + 40)
    XCTAssertTrue(status.message.hasSuffix("more"), status.message)
    XCTAssertTrue(status.message.hasPrefix("invalid request: questions[0].prompt: is required"), status.message)

    // One huge violation alone is cut, not dropped.
    var one = FieldViolations()
    one.add(String(repeating: "f", count: 5000), String(repeating: "d", count: 5000))
    let single = try XCTUnwrap(try one.error().unpackGoogleRPCStatus()?.details.first?.badRequest).violations
    XCTAssertEqual(single.count, 1)
    XCTAssertEqual(single.first?.field.count, 300)

    // A few violations are all carried, as before.
    var few = FieldViolations()
    few.add("email", "is required")
    few.add("age", "must be positive")
    let small = try XCTUnwrap(try few.error().unpackGoogleRPCStatus())
    XCTAssertEqual(small.details.first?.badRequest?.violations.map(\.field), ["email", "age"])
    XCTAssertEqual(small.message, "invalid request: email: is required; age: must be positive")
  }
}
