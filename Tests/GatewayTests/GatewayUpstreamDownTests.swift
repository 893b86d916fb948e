import Foundation
import Gateway
import ServiceKit
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// A gateway whose services are not running: every route answers 503 UNAVAILABLE in the
/// envelope (never a hang, never a 500), while the gateway itself stays live and ready.
final class GatewayUpstreamDownTests: XCTestCase {
  func testAnUnreachableServiceIs503() async throws {
    // Port 1 (tcpmux) has no listener here: every connection is refused.
    let closed = "127.0.0.1:1"
    let settings = try GatewaySettings(
      layers: ConfigLayers(
        environment: [:],
        flags: ["http-port": "0", "admin-port": "0", "auth-target": closed, "quiz-target": closed, "scoring-target": closed]))
    let gateway = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
    let task = Task { try await gateway.run() }
    defer { task.cancel() }
    let addresses = try await gateway.addresses()

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
}
