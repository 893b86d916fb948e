import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import SQLKit
import ServiceKit
import Storage
import TestSupport
import XCTest

@testable import ScoringService

/// `quiz.deleted` reaches the leaderboard through scoring's consumer; when that event was
/// missed (the feed's retention passed the consumer's offset), the resync asks the quiz
/// service which boards' quizzes are gone and hides exactly those.
final class DeletedQuizResyncTests: XCTestCase {
  func testTheResyncHidesTheBoardsOfDeletedQuizzesOnly() async throws {
    let h = try await ScoringHarness.start()
    var extra: (client: GRPCClient<FramedClientTransport>, task: Task<Void, any Error>)?
    do {
      let author = try await h.user("author@example.com", name: "Ada")
      let player = try await h.user("player@example.com", name: "Pat")
      var quizIDs: [String] = []
      for _ in 0..<2 {
        let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 60) }, metadata: author.metadata)
        _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
        let attempt = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata)
        _ = try await h.scoring.submitAnswers(metadata: player.metadata) { writer in
          try await writer.write(
            .with {
              $0.attemptID = attempt.id
              $0.questionID = created.questions[0].id
              $0.choiceIds = ["a"]
            })
        }
        quizIDs.append(created.id)
      }
      let (gone, kept) = (quizIDs[0], quizIDs[1])
      _ = try await h.quiz.deleteQuiz(.with { $0.id = gone }, metadata: author.metadata)

      let db = try Database(.sqlite(path: h.dir + "/scoring.sqlite"), logger: TestDatabases.logger)
      func hidden(_ id: String) async throws -> Bool {
        try await db.read { uow in try await LeaderboardRepository().version(quizID: id, in: uow).hidden }
      }
      // The consumer hides it from the event (within a generous bound).
      let deadline = ContinuousClock.now + .seconds(10)
      while try await !hidden(gone), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
      let hiddenByEvent = try await hidden(gone)
      XCTAssertTrue(hiddenByEvent, "quiz.deleted hid the board")

      // As if the event had been missed: the board is shown again.
      try await db.transaction { uow in try await uow.write("UPDATE leaderboard_versions SET hidden = 0 WHERE quiz_id = \(bind: gone)") }

      // The resync, as scoring runs it: the quiz service asked with scoring's own token.
      let secret = try String(contentsOfFile: LocalSecretFile.clientSecretPath(dataDir: h.dir, service: "scoring"), encoding: .utf8)
      let credentials = ClientCredentialsToken {
        let answer = try await h.authAPI.clientCredentials(
          .with {
            $0.clientID = "scoring"
            $0.clientSecret = secret.trimmingCharacters(in: .whitespacesAndNewlines)
          })
        return (answer.accessToken, .seconds(answer.expiresIn))
      }
      let quizAddress = try await h.hosts[0].addresses().framed
      let client = GRPCClient(
        transport: try FramedClientTransport(config: .init(targets: [FramedTarget(quizAddress)!])),
        interceptors: [BearerTokenInterceptor(credentials: credentials)])
      extra = (client, Task { try await client.runConnections() })
      let hub = LeaderboardHub(load: { _ in TopBoard(rows: [], version: 0, hidden: false) }, present: { _, _ in [] })
      let count = try await ScoringConsumers.hideDeleted(database: db, quizzes: RemoteQuizSource(client: client), hub: hub)
      XCTAssertEqual(count, 1)
      let goneHidden = try await hidden(gone)
      let keptHidden = try await hidden(kept)
      XCTAssertTrue(goneHidden, "the deleted quiz's board is hidden again")
      XCTAssertFalse(keptHidden, "a live quiz's board stays")
      let again = try await ScoringConsumers.hideDeleted(database: db, quizzes: RemoteQuizSource(client: client), hub: hub)
      XCTAssertEqual(again, 0, "nothing left to hide")
      try await db.shutdown()
    } catch {
      extra?.client.beginGracefulShutdown()
      await h.stop()
      throw error
    }
    extra?.client.beginGracefulShutdown()
    _ = await extra?.task.result
    await h.stop()
  }
}
