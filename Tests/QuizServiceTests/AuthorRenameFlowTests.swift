import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import ServiceKit
import TestSupport
import XCTest

/// auth's `user.renamed` reaching the quiz service's `author_display_name` across two real
/// `quizwire serve` processes, including a rename while the quiz service is down.
final class AuthorRenameFlowTests: XCTestCase {
  func testRenamesFollowWithinSecondsAndCatchUpAfterTheQuizServiceWasDown() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let auth = try ServedProcess("auth", settings: ["--data-dir", dir, "--internal-clients", "quiz"])
    defer { auth.stop() }
    let authAddress = try XCTUnwrap(try auth.addresses()["framed"])
    let quizEnvironment = ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: "quiz")]
    let quizSettings = ["--data-dir", dir, "--auth-target", authAddress]
    var quiz = try ServedProcess("quiz", settings: quizSettings, environment: quizEnvironment)
    var quizAddress = try XCTUnwrap(try quiz.addresses()["framed"])

    let authTransport = try FramedClientTransport(config: .init(targets: [FramedTarget(authAddress)!]))
    try await withGRPCClient(transport: authTransport) { authGRPC in
      let authAPI = Auth_V1_AuthService.Client(wrapping: authGRPC)
      _ = try await authAPI.register(
        .with {
          $0.email = "rita@example.com"; $0.password = "a good long password"; $0.displayName = "Rita"
        })
      let token = try await authAPI.login(
        .with {
          $0.email = "rita@example.com"; $0.password = "a good long password"
        }
      ).accessToken
      let bearer: Metadata = ["authorization": .string("Bearer \(token)")]

      var quizID = ""
      try await withQuiz(quizAddress) { api in
        var draft = Quiz_V1_Quiz()
        draft.title = "Rita's quiz"
        draft.questionTimeLimitSeconds = 30
        let created = try await api.createQuiz(.with { $0.quiz = draft }, metadata: bearer)
        XCTAssertEqual(created.authorDisplayName, "Rita", "filled from auth's public profile at creation")
        quizID = created.id

        // Both running: the rename arrives through the feed within 5 s.
        _ = try await authAPI.updateProfile(.with { $0.displayName = "Rita R." }, metadata: bearer)
        let followed = try await eventuallyName(api, quizID, bearer, equals: "Rita R.", within: .seconds(5))
        XCTAssertTrue(followed, "the rename reached the quiz within 5 s")
      }

      // The quiz service is down while the user renames twice; on restart it resumes from its
      // stored offset and shows the newest name.
      quiz.stop()
      _ = try await authAPI.updateProfile(.with { $0.displayName = "Rita Second" }, metadata: bearer)
      _ = try await authAPI.updateProfile(.with { $0.displayName = "Rita Third" }, metadata: bearer)
      quiz = try ServedProcess("quiz", settings: quizSettings, environment: quizEnvironment)
      quizAddress = try XCTUnwrap(try quiz.addresses()["framed"])
      try await withQuiz(quizAddress) { api in
        let caughtUp = try await eventuallyName(api, quizID, bearer, equals: "Rita Third", within: .seconds(10))
        XCTAssertTrue(caughtUp, "the restarted quiz service caught up with the renames it missed")
      }
    }
    quiz.stop()
    let errors = quiz.entries().filter { ($0["level"] as? String) == "error" }
    XCTAssertTrue(errors.isEmpty, "no errors logged: \(errors)")
  }
}

private func withQuiz(_ address: String, _ body: (Quiz_V1_QuizService.Client<FramedClientTransport>) async throws -> Void) async throws {
  let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(address)!]))
  try await withGRPCClient(transport: transport) { grpc in try await body(Quiz_V1_QuizService.Client(wrapping: grpc)) }
}

/// Polls GetQuiz until the author's name is `name` or `timeout` passes.
private func eventuallyName(
  _ api: Quiz_V1_QuizService.Client<FramedClientTransport>, _ id: String, _ bearer: Metadata, equals name: String, within timeout: Duration
) async throws -> Bool {
  let deadline = ContinuousClock.now + timeout
  while ContinuousClock.now < deadline {
    if try await api.getQuiz(.with { $0.id = id }, metadata: bearer).authorDisplayName == name { return true }
    try await Task.sleep(for: .milliseconds(50))
  }
  return try await api.getQuiz(.with { $0.id = id }, metadata: bearer).authorDisplayName == name
}
