import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import QuizwireProtos
import XCTest

/// The same Play over the scoring host's gRPC/HTTP2 listener (a stock grpc-swift client), so
/// the bidi stream works on both transports.
final class PlayGRPCTests: XCTestCase {
  func testAPlayOverGRPCScoresLikeOverTheFramedWire() async throws {
    try await ScoringHarness.with { h in
      let author = try await h.user("author@example.com", name: "Ada")
      let player = try await h.user("player@example.com", name: "Pat")
      let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 60) }, metadata: author.metadata)
      _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
      let address = try await h.hosts[1].addresses().grpc
      let port = try XCTUnwrap(Int(try XCTUnwrap(address.split(separator: ":").last)))
      let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
      let events = try await withGRPCClient(transport: transport) { client in
        let scoring = Scoring_V1_ScoringService.Client(wrapping: client)
        let (requests, sink) = AsyncStream.makeStream(of: Scoring_V1_PlayRequest.self)
        sink.yield(ScoringSample.start(created.id))
        return try await scoring.play(
          metadata: player.metadata,
          requestProducer: { writer in
            for await request in requests { try await writer.write(request) }
          },
          onResponse: { response in
            defer { sink.finish() }
            var events: [Scoring_V1_PlayEvent] = []
            for try await event in response.messages {
              events.append(event)
              guard case .question(let q)? = event.kind else { continue }
              switch q.index {
              case 0: sink.yield(ScoringSample.answer(q.question.id, ["a"]))
              case 1: sink.yield(ScoringSample.answer(q.question.id, ["a", "c"]))
              default: sink.yield(ScoringSample.answer(q.question.id, text: "grace hopper"))
              }
            }
            return events
          })
      }
      let feedback = events.compactMap { if case .feedback(let f)? = $0.kind { f } else { nil } }
      XCTAssertEqual(feedback.map(\.points), [1, 2, 3])
      guard case .finished(let finished)? = events.last?.kind else { return XCTFail("expected finished: \(events)") }
      XCTAssertEqual(finished.attempt.score, 6)
      XCTAssertEqual(finished.attempt.maxScore, 6)
    }
  }
}
