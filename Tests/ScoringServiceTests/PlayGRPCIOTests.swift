import Foundation
import TestSupport
import XCTest

/// grpcio — gRPC's C-core, a client we did not write — plays the demo quiz over the bidi
/// `Play` on the scoring host's gRPC/HTTP2 listener, after registering and signing in over
/// auth's (Tests/Interop/python/grpcio_play.py): questions without answer keys, feedback per
/// answer, the final score, INVALID_ARGUMENT for an answer before `start`.
///
/// Without Python's `grpc` module the test is skipped with a printed reason — or fails under
/// `QUIZWIRE_REQUIRE_ALL=1` (CI installs it).
final class PlayGRPCIOTests: XCTestCase {
  static let script = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Interop/python/grpcio_play.py")
  static let cases = ["signed_in", "questions", "feedback", "finished", "answer_first"]

  func testGRPCIOPlaysTheDemoQuiz() async throws {
    guard try ChildCommand.succeeds("python3 -c 'import grpc'") else {
      if TestDatabases.requireAll { return XCTFail("python3 with grpcio is required (pip install grpcio)") }
      throw XCTSkip("python3 with grpcio not found")
    }
    try await ScoringHarness.with { h in
      let authGRPC = try await h.auth.host.addresses().grpc
      let scoringGRPC = try await h.hosts[1].addresses().grpc
      let output = try ChildCommand.run(
        ["python3", Self.script.path, authGRPC, scoringGRPC, "grace@example.com", ScoringHarness.password], timeout: 120
      ).stdout
      let reports = output.split(separator: "\n").compactMap { line -> [String: Any]? in
        guard line.hasPrefix("{") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      }
      let byCase = Dictionary(reports.map { ($0["case"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
      for name in Self.cases {
        XCTAssertEqual(byCase[name]?["ok"] as? Bool, true, "case \(name): \(byCase[name] ?? [:])\n\(output)")
      }
      // The attempt grpcio finished is on the board (4 of 5).
      let board = try await h.scoring.getLeaderboard(.with { $0.quizID = "qz_demo_swift_concurrency" })
      XCTAssertEqual(board.entries.map(\.score), [4])
      XCTAssertEqual(board.entries.map(\.displayName), ["Grace from grpcio"])
    }
  }
}
