import Foundation
import Gateway
import ServiceKit
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// `upstream-transport h2`: the gateway's unary routes over standard gRPC (HTTP/2), which the
/// gateway benchmark compares with the framed wire.
final class GatewayUpstreamTransportTests: XCTestCase {
  func testUnaryRoutesGoOverGRPCWhenAskedTo() async throws {
    let h = try await GatewayHarness.start()
    do {
      let auth = try await h.auth.host.addresses()
      let quiz = try await h.hosts[0].addresses()
      let scoring = try await h.hosts[1].addresses()
      // The framed quiz and scoring targets lead nowhere: only the gRPC upstream can answer.
      let settings = try GatewaySettings(
        layers: ConfigLayers(
          environment: [:],
          flags: [
            "http-port": "0", "admin-port": "0", "data-dir": h.dir, "auth-target": auth.framed, "quiz-target": "127.0.0.1:1",
            "scoring-target": "127.0.0.1:1", "upstream-transport": "h2", "auth-grpc-target": auth.grpc, "quiz-grpc-target": quiz.grpc,
            "scoring-grpc-target": scoring.grpc,
          ]))
      XCTAssertEqual(settings.upstreamTransport, .h2)
      let gateway = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
      let run = Task { try await gateway.run() }
      let base = "http://" + (try await gateway.addresses().http)

      func get(_ path: String) async throws -> (Int, [String: Any]) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: base + path)!)
        return ((response as! HTTPURLResponse).statusCode, (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
      }
      let (status, list) = try await get("/api/v1/quizzes?limit=5")
      XCTAssertEqual(status, 200, "\(list)")
      let quizzes = try XCTUnwrap(list["data"] as? [[String: Any]])
      let id = try XCTUnwrap(quizzes.first?["id"] as? String)
      let (one, body) = try await get("/api/v1/quizzes/\(id)")
      XCTAssertEqual(one, 200)
      XCTAssertEqual((body["data"] as? [String: Any])?["id"] as? String, id)
      // Errors map through the same status table.
      let (missing, error) = try await get("/api/v1/quizzes/qz_none")
      XCTAssertEqual(missing, 404)
      XCTAssertEqual((error["error"] as? [String: Any])?["status"] as? String, "NOT_FOUND")

      run.cancel()
      _ = await run.result
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }

  func testH2WithoutGRPCTargetsIsAConfigurationError() throws {
    XCTAssertThrowsError(
      try GatewayHost(
        settings: GatewaySettings(
          layers: ConfigLayers(
            environment: [:],
            flags: [
              "http-port": "0", "admin-port": "0", "auth-target": "127.0.0.1:1", "quiz-target": "127.0.0.1:1", "scoring-target": "127.0.0.1:1",
              "upstream-transport": "h2", "data-dir": NSTemporaryDirectory(),
            ])))
    ) { error in
      XCTAssertTrue("\(error)".contains("grpc-target"), "\(error)")
    }
    XCTAssertThrowsError(
      try GatewaySettings(
        layers: ConfigLayers(
          environment: [:],
          flags: ["auth-target": "127.0.0.1:1", "quiz-target": "127.0.0.1:1", "scoring-target": "127.0.0.1:1", "upstream-transport": "carrier-pigeon"])))
  }
}
