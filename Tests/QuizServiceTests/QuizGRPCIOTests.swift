import Foundation
import GRPCCore
import ServiceKit
import TestSupport
import XCTest

@testable import QuizService

/// grpcio — gRPC's C-core, a client we did not write — against the quiz service's gRPC/HTTP2
/// listener behind a real auth service (Tests/Interop/python/grpcio_quiz.py): anonymous reads,
/// NOT_FOUND, UNAUTHENTICATED, field violations in `grpc-status-details-bin`, a signed-in write.
///
/// Without Python's `grpc` module the test is skipped with a printed reason — or fails under
/// `QUIZWIRE_REQUIRE_ALL=1` (CI installs it).
final class QuizGRPCIOTests: XCTestCase {
  static let script = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Interop/python/grpcio_quiz.py")
  static let cases = ["anonymous_get_published", "unknown_quiz", "create_without_credentials", "create_invalid", "create_signed_in"]

  func testGRPCIOClientAgainstTheQuizService() async throws {
    guard try ChildCommand.succeeds("python3 -c 'import grpc'") else {
      if ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" {
        return XCTFail("python3 with grpcio is required (pip install grpcio)")
      }
      throw XCTSkip("python3 with grpcio not found")
    }
    let harness = try await QuizHarness.start()
    do {
      let author = try await harness.user("grpcio@example.com")
      let bearer = try XCTUnwrap(author.metadata[stringValues: "authorization"].first(where: { _ in true }), "no bearer token")
      let token = String(bearer.dropFirst("Bearer ".count))
      let grpc = try await harness.quizHost.addresses().grpc
      let output = try ChildCommand.run(["python3", Self.script.path, grpc, QuizSeed.demoQuizID, token]).stdout
      let reports = output.split(separator: "\n").compactMap { line -> [String: Any]? in
        guard line.hasPrefix("{") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      }
      let byCase = Dictionary(reports.map { ($0["case"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
      for name in Self.cases {
        XCTAssertEqual(byCase[name]?["ok"] as? Bool, true, "case \(name): \(byCase[name] ?? [:])\n\(output)")
      }
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }
}
