import BenchService
import Foundation
import ServiceKit
import XCTest

/// grpcio — gRPC's C-core, a client we did not write — against a host's gRPC/HTTP2 listener
/// (Tests/Interop/python/grpcio_interop.py): every call shape, gzip, deadlines, and the limits
/// of docs/services.md "Limits" as an outside client sees them.
///
/// Without Python's `grpc` module the test is skipped with a printed reason — or fails under
/// `QUIZWIRE_REQUIRE_ALL=1` (CI installs it).
final class GRPCIOInteropTests: XCTestCase {
  static let script = CClientInteropTests.repoRoot.appendingPathComponent("Tests/Interop/python/grpcio_interop.py")

  /// Every case the script reports, with what must hold.
  static let cases = [
    "unary", "server_stream", "client_stream", "bidi", "gzip", "deadline", "oversized_message", "after_oversized",
    "oversized_metadata", "after_oversized_metadata", "unknown_method",
  ]

  func testGRPCIOClientAgainstTheHTTP2Listener() async throws {
    guard try await CClientInteropTests.shell("python3 -c 'import grpc'") else {
      if ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" {
        return XCTFail("python3 with grpcio is required (pip install grpcio)")
      }
      throw XCTSkip("python3 with grpcio not found")
    }
    let host = try ServiceHost(
      name: "bench.v1.EchoService", services: [EchoService()], config: ServiceHost.Config(), logSink: CapturedLog().sink)
    let serving = Task { try await host.run() }
    do {
      let addresses = try await host.addresses()
      let run = try await CClientInteropTests.run("/usr/bin/env", ["python3", Self.script.path, addresses.grpc], timeout: 120)
      XCTAssertEqual(run.status, 0, run.output)
      let reports = run.lines.compactMap { line -> [String: Any]? in
        guard line.hasPrefix("{") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      }
      let byCase = Dictionary(reports.map { ($0["case"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
      for name in Self.cases {
        let report = byCase[name]
        XCTAssertNotNil(report, "case \(name) did not report:\n\(run.output)")
        XCTAssertEqual(report?["ok"] as? Bool, true, "case \(name): \(report ?? [:])")
      }
      // The call alone fails, with the code the server logs: not CANCELLED, not the connection.
      XCTAssertEqual(byCase["oversized_message"]?["code"] as? String, "RESOURCE_EXHAUSTED")
    } catch {
      XCTFail("grpcio run failed: \(error)")
    }
    host.beginGracefulShutdown()
    await CClientInteropTests.awaitShutdown(serving, timeout: 15)
  }
}
