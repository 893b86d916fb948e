import Foundation
import GRPCCore
import QuizwireProtos
import SQLKit
import Storage
import TestSupport
import XCTest

/// Two scoring replicas on one PostgreSQL database: an attempt finished through one is on the
/// other's GetLeaderboard at once (the projection table is the truth) and reaches the other's
/// watchers (board versions over NOTIFY/LISTEN).
final class LeaderboardReplicaTests: XCTestCase {
  func testAFinishOnOneReplicaReachesTheOthersLeaderboardAndWatchers() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL to run the two-replica test")
    }
    let name = "qw_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    let admin = try Database(.postgres(url: url, poolSize: 1), logger: TestDatabases.logger)
    try await admin.read { uow in try await uow.sql.raw("CREATE DATABASE \(ident: String(name))").run() }
    var parts = try XCTUnwrap(URLComponents(string: url))
    parts.path = "/" + name
    let harness = try await ScoringHarness.start(scoringDatabaseURL: try XCTUnwrap(parts.string), scoringReplicas: 2)
    var failure: (any Error)?
    do { try await self.run(harness) } catch { failure = error }
    await harness.stop()
    try? await admin.read { uow in try await uow.sql.raw("DROP DATABASE IF EXISTS \(ident: String(name)) WITH (FORCE)").run() }
    try await admin.shutdown()
    if let failure { throw failure }
  }

  private func run(_ h: ScoringHarness) async throws {
    let (a, b) = (h.replicas[0], h.replicas[1])
    let author = try await h.user("author@example.com", name: "Ada")
    let player = try await h.user("player@example.com", name: "Pat")
    let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 60) }, metadata: author.metadata)
    _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)

    let (snapshots, sink) = AsyncStream.makeStream(of: Scoring_V1_LeaderboardSnapshot.self)
    let watcher = Task {
      try await b.watchLeaderboard(.with { $0.quizID = created.id }) { response in
        for try await snapshot in response.messages { sink.yield(snapshot) }
      }
    }
    defer { watcher.cancel() }
    var received = snapshots.makeAsyncIterator()
    let first = await received.next()
    XCTAssertEqual(first?.version, 0)

    let attempt = try await a.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata)
    let finished = try await a.submitAnswers(metadata: player.metadata) { writer in
      try await writer.write(
        .with {
          $0.attemptID = attempt.id
          $0.questionID = created.questions[0].id
          $0.choiceIds = ["a"]
        })
    }
    XCTAssertEqual(finished.score, 1)
    let board = try await b.getLeaderboard(.with { $0.quizID = created.id })
    XCTAssertEqual(board.entries.map(\.attemptID), [attempt.id], "the other replica reads the projection at once")
    XCTAssertEqual(board.version, 1)
    let next = await received.next()
    XCTAssertEqual(next?.version, 1, "the other replica's watcher follows the version")
    XCTAssertEqual(next?.entries.map(\.userID), [player.id])
  }
}
