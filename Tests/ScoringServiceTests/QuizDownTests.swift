import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import GRPCCore
import QuizwireProtos
import XCTest

/// The quiz service down for a quiz scoring has never fetched: StartAttempt fails UNAVAILABLE
/// quickly instead of waiting out its deadline, the breaker of quiz's replica opens (on
/// scoring's /metrics), and StartAttempt works again once quiz is back (after the breaker's
/// open period, through its probe).
final class QuizDownTests: XCTestCase {
  func testStartAttemptFailsFastWhileQuizIsDownAndRecovers() async throws {
    try await ScoringHarness.with { h in
      let author = try await h.user("author@example.com", name: "Ada")
      let player = try await h.user("player@example.com", name: "Pat")
      let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz() }, metadata: author.metadata)
      _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
      let port = Int(try await h.hosts[0].addresses().framed.split(separator: ":").last!)!
      h.hosts[0].beginGracefulShutdown()
      try await h.waitUntilStopped(0)

      var durations: [Duration] = []
      for _ in 0..<12 {
        let start = ContinuousClock.now
        let code = await rpcCode { _ = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata) }
        durations.append(ContinuousClock.now - start)
        XCTAssertEqual(code, .unavailable)
      }
      XCTAssertLessThan(durations.max()!, .seconds(1), "fails fast, not at the 3 s deadline: \(durations)")
      let addresses = try await h.hosts[1].addresses()
      let admin = try XCTUnwrap(addresses.admin)
      let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(admin)/metrics")!)
      let open = String(decoding: data, as: UTF8.self).split(separator: "\n").filter {
        $0.hasPrefix("rpc_client_circuit_open{") && $0.contains("service=\"quiz\"")
      }
      XCTAssertEqual(open.map { $0.split(separator: " ").last.flatMap { Double($0) } }, [1], "quiz's only replica has its breaker open: \(open)")

      try await h.startQuiz(framedPort: port)
      let restarted = ContinuousClock.now
      var attempt: Scoring_V1_Attempt?
      while attempt == nil, ContinuousClock.now - restarted < .seconds(15) {
        attempt = try? await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata)
        if attempt == nil { try await Task.sleep(for: .milliseconds(100)) }
      }
      XCTAssertEqual(attempt?.quizID, created.id, "works again once quiz is back")
    }
  }
}
