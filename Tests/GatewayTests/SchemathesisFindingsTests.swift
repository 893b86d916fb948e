import Foundation
import XCTest

/// What schemathesis found against the live gateway (and the review of the same class of
/// answer around it), kept as plain regression tests so they run without it.
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

  /// A play-ticket request with a body over its 4 KiB limit was a 500 (Hummingbird's
  /// "content too large" reached the responder as an unknown error); it is 413 in the envelope.
  func testAnOversizedPlayTicketBodyIs413NotAServerError() async throws {
    let h = try await GatewayHarness.start()
    do {
      let token = try await h.signIn("ticket@example.com", name: "Ticket")
      let big = try await h.request(
        "POST", "/api/v1/attempts/play-ticket", json: #"{"a":""# + String(repeating: "x", count: 5000) + #""}"#, bearer: token)
      XCTAssertEqual(big.status, 413, String(decoding: big.body, as: UTF8.self))
      XCTAssertEqual(big.error?["status"] as? String, "PAYLOAD_TOO_LARGE")
      XCTAssertEqual(big.meta?["request_id"] as? String, big.header("X-Request-Id"))
      let fine = try await h.request("POST", "/api/v1/attempts/play-ticket", json: "{}", bearer: token)
      XCTAssertEqual(fine.status, 201, String(decoding: fine.body, as: UTF8.self))
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }

  /// A chunked body (no Content-Length) over the 1 MiB limit was a 500: the size check only
  /// read Content-Length, and the streaming limit's NIOTooManyBytesError reached the responder
  /// unmapped. It is 413 like a declared one, over a raw socket so the body really is chunked.
  func testAChunkedBodyOverTheLimitIs413() async throws {
    let h = try await GatewayHarness.start(gatewayFlags: ["body-limit": "1000"])
    do {
      let token = try await h.signIn("chunked@example.com", name: "Chunked")
      let body = #"{"title":""# + String(repeating: "x", count: 3000) + #""}"#
      let stream = try RawHTTPStream(
        h.baseURL, "/api/v1/quizzes", method: "POST",
        headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json", "X-Request-Id": "chunked-1"],
        chunkedBody: Array(body.utf8))
      defer { stream.close() }
      XCTAssertEqual(stream.status, 413)
      XCTAssertEqual(stream.header("X-Request-Id"), "chunked-1")
      let text = await stream.next(until: "}}", within: .seconds(5)) ?? ""
      XCTAssertTrue(text.contains("PAYLOAD_TOO_LARGE"), text)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }
}
