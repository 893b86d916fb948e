import Foundation
import XCTest

/// What schemathesis found against the live gateway, kept as plain regression tests so they
/// run without it.
final class SchemathesisFindingsTests: XCTestCase {
  /// A quiz body with a hundred broken questions was a 500: the violations outgrew the call's
  /// trailers (16 KiB) and the service's answer became INTERNAL, which also counted against the
  /// quiz replica's circuit breaker. It is a 400 with the first violations now, and the next
  /// valid call goes through.
  func testAHundredBrokenQuestionsAre400NotAServerError() async throws {
    let h = try await GatewayHarness.start()
    do {
      let token = try await h.signIn("many@example.com", name: "Many")
      let question = #"{"prompt":"","kind":"QUESTION_KIND_UNSPECIFIED","choices":[{"id":"","text":""},{"id":"","text":""}]}"#
      let body = #"{"title":"Broken","questions":["# + Array(repeating: question, count: 100).joined(separator: ",") + "]}"
      for _ in 0..<6 {
        let created = try await h.request("POST", "/api/v1/quizzes", json: body, bearer: token)
        XCTAssertEqual(created.status, 400, String(decoding: created.body.prefix(300), as: UTF8.self))
        XCTAssertEqual(created.error?["status"] as? String, "INVALID_ARGUMENT")
        XCTAssertEqual(created.violations["quiz.questions[0].prompt"], "is required", "\(created.violations.count) violations")
        XCTAssertTrue((created.error?["message"] as? String ?? "").hasSuffix("more"))
      }
      let fine = try await h.request("POST", "/api/v1/quizzes", json: GatewayEndToEndTests.quizBody, bearer: token)
      XCTAssertEqual(fine.status, 201, String(decoding: fine.body, as: UTF8.self))
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }
}
