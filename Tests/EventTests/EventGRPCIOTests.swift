import FramedTransport
import Foundation
import GRPCCore
import QuizwireProtos
import ServiceKit
import TestSupport
import XCTest

/// grpcio — gRPC's C-core, a client we did not write — reading a feed over the producer's
/// gRPC/HTTP2 listener (Tests/Interop/python/grpcio_events.py): replay in order, NOT_FOUND,
/// OUT_OF_RANGE, UNAUTHENTICATED. Skipped without Python's `grpc` — failed under
/// `QUIZWIRE_REQUIRE_ALL=1` (CI installs it).
final class EventGRPCIOTests: XCTestCase {
  static let script = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Interop/python/grpcio_events.py")

  func testGRPCIOReadsAFeed() async throws {
    guard try ChildCommand.succeeds("python3 -c 'import grpc'") else {
      if TestDatabases.requireAll { return XCTFail("python3 with grpcio is required (pip install grpcio)") }
      throw XCTSkip("python3 with grpcio not found")
    }
    let harness = try await EventHarness()
    let ledger = try await harness.startLedger(storage: StorageOptions(dataDir: harness.dir))
    try await EventHarness.append(50, to: ledger.database)
    let secret = try harness.remoteAuth("tally").clientSecret.reveal()
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(harness.authAddress)!]))
    let token = try await withGRPCClient(transport: transport) { grpc in
      try await Auth_V1_AuthService.Client(wrapping: grpc).clientCredentials(
        .with {
          $0.clientID = "tally"
          $0.clientSecret = secret
        }
      ).accessToken
    }
    let grpcAddress = try await ledger.host.addresses().grpc
    let output = try ChildCommand.run(["python3", Self.script.path, grpcAddress, token, "50"]).stdout
    let reports = output.split(separator: "\n").compactMap { line -> [String: Any]? in
      guard line.hasPrefix("{") else { return nil }
      return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }
    let byCase = Dictionary(reports.map { ($0["case"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
    for name in ["replay_in_order", "unknown_topic", "past_the_head", "no_token"] {
      XCTAssertEqual(byCase[name]?["ok"] as? Bool, true, "case \(name): \(byCase[name] ?? [:])\n\(output)")
    }
    await ledger.stop()
    await harness.shutdown()
  }
}
