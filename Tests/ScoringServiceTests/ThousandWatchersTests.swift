import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import Synchronization
import XCTest

/// Fan-out at scale over the framed wire: 1,000 WatchLeaderboard streams on one scoring host,
/// 10 of which never read a message. Every reading watcher gets every finish's snapshot in
/// good time, and the ones that don't read hold nobody back.
final class ThousandWatchersTests: XCTestCase {
  /// What the watchers saw: the newest version per reading watcher, and how many started.
  final class Progress: Sendable {
    let seen = Mutex([Int64](repeating: -1, count: 990))
    let started = Atomic<Int>(0)
  }

  func testAThousandWatchersOfWhichTenNeverRead() async throws {
    // Anonymous watchers are rate-limited per address; 1,000 from 127.0.0.1 are one test.
    let h = try await ScoringHarness.start(scoringFlags: ["rate-limit": "0"])
    var clients: [GRPCClient<FramedClientTransport>] = []
    var tasks: [Task<Void, any Error>] = []
    do {
      let address = try await h.hosts[1].addresses().framed
      for _ in 0..<4 {
        let client = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(address)!])))
        tasks.append(Task { try await client.runConnections() })
        clients.append(client)
      }
      try await self.run(h, clients: clients.map { Scoring_V1_ScoringService.Client(wrapping: $0) })
    } catch {
      for client in clients { client.beginGracefulShutdown() }
      await h.stop()
      throw error
    }
    for client in clients { client.beginGracefulShutdown() }
    for task in tasks { _ = await task.result }
    await h.stop()
  }

  private func run(_ h: ScoringHarness, clients: [Scoring_V1_ScoringService.Client<FramedClientTransport>]) async throws {
    let author = try await h.user("author@example.com", name: "Ada")
    let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 60) }, metadata: author.metadata)
    _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
    var players: [(metadata: Metadata, id: String)] = []
    for n in 0..<8 { players.append(try await h.user("p\(n)@example.com", name: "Player \(n)")) }

    // The newest version each reading watcher has seen; the readers' first snapshots.
    let progress = Progress()
    var watchers: [Task<Void, any Error>] = []
    for i in 0..<1_000 {
      let client = clients[i % clients.count]
      let reads = i >= 10
      watchers.append(
        Task {
          try await client.watchLeaderboard(
            .with {
              $0.quizID = created.id
              $0.topN = 100
            }
          ) { response in
            progress.started.add(1, ordering: .relaxed)
            guard reads else {
              // Never reads: the stream stays open until the test ends.
              try await Task.sleep(for: .seconds(3600))
              return
            }
            for try await snapshot in response.messages { progress.seen.withLock { $0[i - 10] = max($0[i - 10], snapshot.version) } }
          }
        })
    }
    defer { for watcher in watchers { watcher.cancel() } }
    func waitUntil(_ what: String, within limit: Duration, _ done: () -> Bool) async throws {
      let deadline = ContinuousClock.now + limit
      while !done() {
        guard ContinuousClock.now < deadline else { return XCTFail("not within \(limit): \(what)") }
        try await Task.sleep(for: .milliseconds(5))
      }
    }
    try await waitUntil("every watcher has its first snapshot", within: .seconds(30)) {
      progress.started.load(ordering: .relaxed) == 1_000 && progress.seen.withLock { $0.allSatisfy { $0 >= 0 } }
    }

    // Eight finishes, one after another: each is a new board version every reader must see.
    var worst: Duration = .zero
    for (n, player) in players.enumerated() {
      let attempt = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata)
      let finished = try await h.scoring.submitAnswers(metadata: player.metadata) { writer in
        try await writer.write(
          .with {
            $0.attemptID = attempt.id
            $0.questionID = created.questions[0].id
            $0.choiceIds = [created.questions[0].choices[0].id]
          })
      }
      XCTAssertEqual(finished.state, .finished)
      let begin = ContinuousClock.now
      try await waitUntil("990 readers see version \(n + 1)", within: .seconds(10)) { progress.seen.withLock { $0.allSatisfy { $0 >= Int64(n + 1) } } }
      worst = max(worst, ContinuousClock.now - begin)
    }
    // A generous bound that separates working from broken (debug build, 2 cores).
    XCTAssertLessThan(worst, .seconds(5), "the slowest delivery of a finish to all 990 reading watchers")
    let board = try await h.scoring.getLeaderboard(.with { $0.quizID = created.id })
    XCTAssertEqual(board.entries.count, 8)
    XCTAssertEqual(board.version, 8)
  }
}
