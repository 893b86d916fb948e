import Foundation
import XCTest

@testable import Gateway

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// HTTP RED by route template on the admin port's /metrics, and the access log.
final class HTTPObservationTests: XCTestCase {
  func testRequestsAreCountedByRouteTemplateAndLoggedWithTheirIDs() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
      let list = try await suite.request(
        "GET", "/api/v1/quizzes?limit=1", headers: ["X-Request-Id": "obs-1", "traceparent": "00-\(trace)-00f067aa0ba902b7-01"])
      XCTAssertEqual(list.status, 200)
      let id = try XCTUnwrap(list.list?.first?["id"] as? String)
      for _ in 0..<3 {
        let read = try await suite.request("GET", "/api/v1/quizzes/\(id)")
        XCTAssertEqual(read.status, 200)
      }
      let missing = try await suite.request("GET", "/api/v1/quizzes/qz_missing")
      XCTAssertEqual(missing.status, 404)
      let nowhere = try await suite.request("GET", "/api/v1/no/such/thing/\(UUID())")
      XCTAssertEqual(nowhere.status, 404)
      // Methods outside the usual seven can't add series: they all count as "other". (Tokens
      // NIO's parser doesn't know at all are 400 before routing: GatewayHeaderPolicyTests.)
      for verb in ["PURGE", "LOCK"] {
        let odd = try await suite.request(verb, "/api/v1/quizzes")
        XCTAssertEqual(odd.status, 405)
      }

      let (data, _) = try await URLSession.shared.data(from: URL(string: suite.adminURL + "/metrics")!)
      let metrics = String(decoding: data, as: UTF8.self)
      func count(_ labels: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix("http_server_requests_total{") && $0.contains(labels) }
          .flatMap { Double($0.split(separator: " ").last ?? "") }
      }
      // Values in the path never become labels: one series per template.
      XCTAssertEqual(count(#"route="/api/v1/quizzes/{id}",status="200""#), 3, metrics)
      XCTAssertEqual(count(#"route="/api/v1/quizzes/{id}",status="404""#), 1)
      XCTAssertEqual(count(#"route="unmatched",status="404""#), 1)
      XCTAssertTrue(metrics.contains(#"http_server_duration_seconds_count{method="GET",route="/api/v1/quizzes"}"#), metrics)
      XCTAssertFalse(metrics.contains("qz_missing"))
      XCTAssertEqual(count(#"method="other",route="unmatched",status="405""#), 2, metrics)
      XCTAssertFalse(metrics.contains("PURGE"))

      let lines = suite.gatewayLog.entries().filter { $0["message"] as? String == "http" || $0["msg"] as? String == "http" }
      let first = try XCTUnwrap(lines.first { "\($0)".contains("obs-1") }, "\(suite.gatewayLog.rawLines().suffix(5))")
      XCTAssertTrue("\(first)".contains(trace), "the caller's trace id is logged: \(first)")
      XCTAssertTrue("\(first)".contains("/api/v1/quizzes"))
      XCTAssertFalse(suite.gatewayLog.rawLines().joined().contains("limit=1"), "no query strings in the log")
      XCTAssertEqual(HTTPObservation.traceID("00-\(trace)-00f067aa0ba902b7-01"), trace)
      XCTAssertNil(HTTPObservation.traceID("00-\(String(repeating: "0", count: 32))-00f067aa0ba902b7-01"))
      XCTAssertNil(HTTPObservation.traceID("garbage"))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }
}
