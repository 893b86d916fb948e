import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import QuizwireProtos
import ServiceKit
import TestSupport
import XCTest

/// The full play end to end with three real `quizwire serve` processes — auth, quiz, scoring,
/// started in `up`'s order (quiz before scoring, which calls it): a player plays the demo quiz
/// over `Play` on the framed wire, another over gRPC/HTTP2; exact scores and feedback,
/// `GetLeaderboard`, and the quiz's play count and averages following scoring's
/// `attempt.finished` within 5 s (a cached anonymous read included).
final class PlayFlowProcessTests: XCTestCase {
  static let password = "a good long password"

  func testTheDemoQuizPlayedOverBothTransportsScoresRanksAndCounts() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let auth = try ServedProcess("auth", settings: ["--data-dir", dir, "--internal-clients", "quiz,scoring"])
    defer { auth.stop() }
    let authAddress = try XCTUnwrap(try auth.addresses()["framed"])
    func secret(_ service: String) -> [String: String] {
      ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: service)]
    }
    // Each needs the other's address: scoring's framed port is chosen before either starts.
    let scoringPort = try FreePort.pick()
    let quiz = try ServedProcess(
      "quiz", settings: ["--data-dir", dir, "--auth-target", authAddress, "--scoring-target", "127.0.0.1:\(scoringPort)"],
      environment: secret("quiz"))
    defer { quiz.stop() }
    let quizAddress = try XCTUnwrap(try quiz.addresses()["framed"])
    let scoring = try ServedProcess(
      arguments: [
        "serve", "scoring", "--framed-port", "\(scoringPort)", "--grpc-port", "0", "--admin-port", "0", "--grace", "1",
        "--data-dir", dir, "--auth-target", authAddress, "--quiz-target", quizAddress,
      ], environment: secret("scoring"))
    defer { scoring.stop() }
    let scoringAddresses = try scoring.addresses()
    XCTAssertEqual(scoringAddresses["framed"], "127.0.0.1:\(scoringPort)")
    let scoringGRPC = try XCTUnwrap(scoringAddresses["grpc"])

    try await withFramed(authAddress) { authGRPC in
      try await withFramed(quizAddress) { quizGRPC in
        try await withFramed("127.0.0.1:\(scoringPort)") { scoringGRPC2 in
          let authAPI = Auth_V1_AuthService.Client(wrapping: authGRPC)
          let quizAPI = Quiz_V1_QuizService.Client(wrapping: quizGRPC)
          let framedScoring = Scoring_V1_ScoringService.Client(wrapping: scoringGRPC2)
          let ada = try await Self.signUp(authAPI, "ada@example.com", name: "Ada")
          let bob = try await Self.signUp(authAPI, "bob@example.com", name: "Bob")
          // An anonymous read fills quiz's cache with the unplayed quiz.
          let unplayed = try await quizAPI.getQuiz(.with { $0.id = Self.demoID })
          XCTAssertEqual(unplayed.playCount, 0)

          // Ada on the framed wire misses the last question; Bob over gRPC/HTTP2 gets all five.
          let adaEvents = try await Self.play(framedScoring, ada.metadata, lastCorrect: false)
          let port = try XCTUnwrap(Int(try XCTUnwrap(scoringGRPC.split(separator: ":").last)))
          let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
          let bobEvents = try await withGRPCClient(transport: transport) { client in
            try await Self.play(Scoring_V1_ScoringService.Client(wrapping: client), bob.metadata, lastCorrect: true)
          }
          let finishedAt = ContinuousClock.now
          Self.assertPlayed(adaEvents, points: [1, 1, 1, 1, 0], score: 4, player: ada.id)
          Self.assertPlayed(bobEvents, points: [1, 1, 1, 1, 1], score: 5, player: bob.id)

          let board = try await framedScoring.getLeaderboard(.with { $0.quizID = Self.demoID })
          XCTAssertEqual(board.entries.map(\.rank), [1, 2])
          XCTAssertEqual(board.entries.map(\.userID), [bob.id, ada.id])
          XCTAssertEqual(board.entries.map(\.displayName), ["Bob", "Ada"])
          XCTAssertEqual(board.entries.map(\.score), [5, 4])

          // Quiz counts both plays from scoring's feed; the anonymous (cached) read follows.
          var counted = try await quizAPI.getQuiz(.with { $0.id = Self.demoID })
          while counted.playCount < 2, ContinuousClock.now - finishedAt < .seconds(5) {
            try await Task.sleep(for: .milliseconds(50))
            counted = try await quizAPI.getQuiz(.with { $0.id = Self.demoID })
          }
          XCTAssertEqual(counted.playCount, 2, "both plays counted within 5 s of the last finish")
          XCTAssertEqual(counted.averageScore, 4.5, accuracy: 1e-9)
          XCTAssertEqual(counted.averageScoreFraction, 0.9, accuracy: 1e-9)
          XCTAssertEqual(counted.etag, unplayed.etag, "plays are not content")
          let listed = try await quizAPI.listQuizzes(.with { $0.pageSize = 10 })
          XCTAssertEqual(listed.quizzes.first { $0.id == Self.demoID }?.playCount, 2, "lists show it too")
        }
      }
    }
    // Quiz started before scoring: its consumer waited quietly (an info line), no warnings
    // (read before the stops: scoring stopping first ends quiz's subscription, which warns).
    let feedLines = quiz.entries().filter { (($0["message"] as? String) ?? "").contains("event feed") }
    XCTAssertEqual(feedLines.filter { ($0["level"] as? String) == "warning" }.count, 0, "quiz warned while scoring started: \(feedLines)")
    XCTAssertLessThanOrEqual(feedLines.filter { ($0["level"] as? String) == "info" }.count, 1, "at most one line said it waits: \(feedLines)")
    scoring.stop()
    quiz.stop()
    for (name, process) in [("auth", auth), ("quiz", quiz), ("scoring", scoring)] {
      let errors = process.entries().filter { ($0["level"] as? String) == "error" || ($0["level"] as? String) == "critical" }
      XCTAssertTrue(errors.isEmpty, "\(name) logged errors: \(errors)")
    }
  }

  static let demoID = "qz_demo_swift_concurrency"

  static func signUp(
    _ auth: Auth_V1_AuthService.Client<FramedClientTransport>, _ email: String, name: String
  ) async throws -> (metadata: Metadata, id: String) {
    _ = try await auth.register(
      .with {
        $0.email = email
        $0.password = Self.password
        $0.displayName = name
      })
    let tokens = try await auth.login(
      .with {
        $0.email = email
        $0.password = Self.password
      })
    let bearer: Metadata = ["authorization": .string("Bearer \(tokens.accessToken)")]
    return (bearer, try await auth.getMe(.init(), metadata: bearer).id)
  }

  /// The demo quiz's answers by question index; the last one right or wrong.
  static func answer(_ question: Scoring_V1_QuestionEvent, lastCorrect: Bool) -> Scoring_V1_PlayRequest {
    .with {
      $0.answer = .with {
        $0.questionID = question.question.id
        switch question.index {
        case 0: $0.choiceIds = ["a"]
        case 1: $0.choiceIds = ["false"]
        case 2: $0.choiceIds = ["d", "a", "b"]
        case 3: $0.text = "  Await "
        default: $0.choiceIds = [lastCorrect ? "a" : "b"]
        }
      }
    }
  }

  /// Plays the demo quiz over `Play`: `start`, then an answer to each question; every event.
  static func play<T: ClientTransport>(
    _ scoring: Scoring_V1_ScoringService.Client<T>, _ metadata: Metadata, lastCorrect: Bool
  ) async throws -> [Scoring_V1_PlayEvent] {
    let (requests, sink) = AsyncStream.makeStream(of: Scoring_V1_PlayRequest.self)
    sink.yield(.with { $0.start = .with { $0.quizID = Self.demoID } })
    return try await scoring.play(
      metadata: metadata,
      requestProducer: { writer in
        for await request in requests { try await writer.write(request) }
      },
      onResponse: { response in
        defer { sink.finish() }
        var events: [Scoring_V1_PlayEvent] = []
        for try await event in response.messages {
          events.append(event)
          if case .question(let question)? = event.kind { sink.yield(Self.answer(question, lastCorrect: lastCorrect)) }
        }
        return events
      })
  }

  static func assertPlayed(_ events: [Scoring_V1_PlayEvent], points: [Int32], score: Int32, player: String, line: UInt = #line) {
    let questions = events.compactMap { if case .question(let q)? = $0.kind { q } else { nil } }
    XCTAssertEqual(questions.map(\.index), [0, 1, 2, 3, 4], line: line)
    XCTAssertTrue(questions.allSatisfy { !$0.question.hasAnswerKey }, "no answer key reaches the player", line: line)
    let feedback = events.compactMap { if case .feedback(let f)? = $0.kind { f } else { nil } }
    XCTAssertEqual(feedback.map(\.points), points, line: line)
    XCTAssertEqual(feedback.map(\.correct), points.map { $0 > 0 }, line: line)
    XCTAssertEqual(feedback.last?.runningScore, score, line: line)
    guard case .finished(let finished)? = events.last?.kind else { return XCTFail("expected finished last: \(events)", line: line) }
    XCTAssertEqual(finished.attempt.score, score, line: line)
    XCTAssertEqual(finished.attempt.maxScore, 5, line: line)
    XCTAssertEqual(finished.attempt.state, .finished, line: line)
    XCTAssertEqual(finished.attempt.userID, player, line: line)
  }
}

private func withFramed<R: Sendable>(_ address: String, _ body: (GRPCClient<FramedClientTransport>) async throws -> R) async throws -> R {
  let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(address)!]))
  return try await withGRPCClient(transport: transport) { try await body($0) }
}
