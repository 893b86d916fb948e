import Foundation
import Gateway
import ServiceKit
import TestSupport
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// A gateway whose services are not running: every route answers 503 UNAVAILABLE in the
/// envelope (never a hang, never a 500), while the gateway itself stays live and ready.
final class GatewayUpstreamDownTests: XCTestCase {
  func testAnUnreachableServiceIs503() async throws {
    // Every service at port 1 (tcpmux), which has no listener here: every connection is refused.
    let (_, addresses, task) = try await startLoneGateway()
    defer { task.cancel() }

    let start = ContinuousClock.now
    let (data, response) = try await URLSession.shared.data(from: URL(string: "http://\(addresses.http)/api/v1/quizzes/q1")!)
    let status = (response as! HTTPURLResponse).statusCode
    let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    XCTAssertEqual(status, 503, String(decoding: data, as: UTF8.self))
    XCTAssertEqual((body["error"] as? [String: Any])?["status"] as? String, "UNAVAILABLE")
    XCTAssertNil(body["data"])
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(9), "failed fast, not at the 10 s deadline")

    let (_, ready) = try await URLSession.shared.data(from: URL(string: "http://\(addresses.admin)/readyz")!)
    XCTAssertEqual((ready as! HTTPURLResponse).statusCode, 200)
  }

  /// One service down among running ones: its routes answer 503 within 100 ms (the client's
  /// breaker and fail-fast, not a wait), while routes of the other services keep working.
  func testQuizDownIs503Within100msWhileAuthWorks() async throws {
    let h = try await GatewayHarness.start()
    do {
      let token = try await h.signIn("player@example.com", name: "Pat")
      let before = try await h.request("GET", "/api/v1/quizzes/qz_demo_swift_concurrency")
      XCTAssertEqual(before.status, 200, String(decoding: before.body, as: UTF8.self))

      h.hosts[0].beginGracefulShutdown()  // quiz
      try await h.waitUntilStopped(0)
      // The first call learns that the connection is gone; every later one must fail fast.
      _ = try await h.request("GET", "/api/v1/quizzes/qz_demo_swift_concurrency")
      var slowest: Duration = .zero
      for _ in 0..<10 {
        let start = ContinuousClock.now
        let down = try await h.request("GET", "/api/v1/quizzes/qz_demo_swift_concurrency")
        slowest = max(slowest, ContinuousClock.now - start)
        XCTAssertEqual(down.status, 503, String(decoding: down.body, as: UTF8.self))
        XCTAssertEqual(down.error?["status"] as? String, "UNAVAILABLE")
      }
      XCTAssertLessThan(slowest, .milliseconds(100), "quiz routes fail fast while quiz is down")

      let me = try await h.request("GET", "/api/v1/me", bearer: token)
      XCTAssertEqual(me.status, 200, "auth routes still work: \(String(decoding: me.body, as: UTF8.self))")
      let login = try await h.request(
        "POST", "/api/v1/auth/login", json: #"{"email":"player@example.com","password":"\#(GatewayHarness.password)"}"#)
      XCTAssertEqual(login.status, 200)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }
}
