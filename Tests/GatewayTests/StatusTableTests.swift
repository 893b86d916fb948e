import GRPCCore
import GRPCProtobuf
import XCTest

@testable import Gateway

/// The status table row by row (pure: no network), and the error envelope built from a
/// service's rich status.
final class StatusTableTests: XCTestCase {
  func testEveryCodeMapsToItsRow() {
    let expected: [(RPCError.Code, Int, String)] = [
      (.invalidArgument, 400, "INVALID_ARGUMENT"),
      (.outOfRange, 400, "OUT_OF_RANGE"),
      (.unauthenticated, 401, "UNAUTHENTICATED"),
      (.permissionDenied, 403, "PERMISSION_DENIED"),
      (.notFound, 404, "NOT_FOUND"),
      (.alreadyExists, 409, "ALREADY_EXISTS"),
      (.aborted, 409, "ABORTED"),
      (.failedPrecondition, 422, "FAILED_PRECONDITION"),
      (.resourceExhausted, 429, "RESOURCE_EXHAUSTED"),
      (.cancelled, 499, "CANCELLED"),
      (.unimplemented, 501, "UNIMPLEMENTED"),
      (.unavailable, 503, "UNAVAILABLE"),
      (.deadlineExceeded, 504, "DEADLINE_EXCEEDED"),
      (.internalError, 500, "INTERNAL"),
      (.unknown, 500, "UNKNOWN"),
      (.dataLoss, 500, "DATA_LOSS"),
    ]
    for (code, status, name) in expected {
      let row = StatusTable.row(for: code)
      XCTAssertEqual(row.httpStatus, status, "\(code)")
      XCTAssertEqual(row.status, name, "\(code)")
      XCTAssertEqual(row.challenge, code == .unauthenticated, "\(code)")
      XCTAssertEqual(row.retryAfter, code == .resourceExhausted || code == .unavailable, "\(code)")
    }
  }

  func testUnauthenticatedCarriesTheBearerChallenge() {
    let error = APIError.from(RPCError(code: .unauthenticated, message: "missing credentials"))
    XCTAssertEqual(error.httpStatus, 401)
    XCTAssertEqual(error.headers["WWW-Authenticate"].map { $0.hasPrefix("Bearer ") }, true)
    XCTAssertEqual(error.message, "missing credentials")
  }

  func testResourceExhaustedSaysWhenToRetry() {
    let told = APIError.from(
      RPCError(GoogleRPCStatus(code: .resourceExhausted, message: "slow down", details: [.retryInfo(delay: .milliseconds(2500))])))
    XCTAssertEqual(told.httpStatus, 429)
    XCTAssertEqual(told.headers["Retry-After"], "3")  // rounded up
    XCTAssertEqual(told.details, [.retryInfo(.milliseconds(2500))])
    let untold = APIError.from(RPCError(code: .resourceExhausted, message: "slow down"))
    XCTAssertEqual(untold.headers["Retry-After"], "1")
    XCTAssertNil(APIError.from(RPCError(code: .unavailable, message: "down")).headers["Retry-After"])
  }

  func testReasonAndViolationsComeFromTheRichStatus() {
    let status = GoogleRPCStatus(
      code: .aborted, message: "stale etag",
      details: [.errorInfo(reason: "ETAG_MISMATCH", domain: "quiz.quizwire"), .badRequest(violations: [.init(field: "etag", description: "stale")])])
    let error = APIError.from(RPCError(status))
    XCTAssertEqual(error.httpStatus, 409)
    XCTAssertEqual(error.reason, "ETAG_MISMATCH")
    XCTAssertEqual(error.message, "stale etag")
    XCTAssertEqual(
      error.details,
      [.errorInfo(reason: "ETAG_MISMATCH", domain: "quiz.quizwire", metadata: [:]), .badRequest([.init(field: "etag", description: "stale")])])
  }

  func testInternalErrorsHideTheirMessage() throws {
    let error = APIError.from(
      RPCError(GoogleRPCStatus(code: .internalError, message: "SQLITE_BUSY at /var/db", details: [.errorInfo(reason: "DB", domain: "x")])))
    XCTAssertEqual(error.httpStatus, 500)
    XCTAssertEqual(error.message, "internal error")
    XCTAssertEqual(error.details, [])
    XCTAssertNil(error.reason)
    let body = try JSONSerialization.jsonObject(with: Envelope.error(error, requestID: "r1")) as? [String: Any]
    XCTAssertFalse(String(decoding: Envelope.error(error, requestID: "r1"), as: UTF8.self).contains("SQLITE"))
    XCTAssertNil(body?["data"])
    XCTAssertEqual((body?["meta"] as? [String: Any])?["request_id"] as? String, "r1")
    XCTAssertEqual((body?["error"] as? [String: Any])?["code"] as? Int, 500)
    XCTAssertEqual((body?["error"] as? [String: Any])?["status"] as? String, "INTERNAL")
  }
}
