import Foundation
import GRPCCore
import QuizwireProtos
import Synchronization
import XCTest

/// WatchLeaderboard, Play's resume and renamed players, against real auth, quiz and scoring
/// hosts in-process over the framed wire.
final class LeaderboardWatchTests: XCTestCase {
  func testWatchersGetVersionedSnapshotsResumeKeepsTheDeadlineAndRenamesReachTheBoard() async throws {
    try await ScoringHarness.with { harness in
      try await self.run(harness)
    }
  }

  private func run(_ h: ScoringHarness) async throws {
    let author = try await h.user("author@example.com", name: "Ada")
    let player = try await h.user("player@example.com", name: "Pat")
    let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 60) }, metadata: author.metadata)
    _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
    let ids = created.questions.map(\.id)

    let tooMany = await rpcCode {
      try await h.scoring.watchLeaderboard(
        .with {
          $0.quizID = created.id
          $0.topN = 101
        }
      ) { response in for try await _ in response.messages {} }
    }
    XCTAssertEqual(tooMany, .invalidArgument)

    // A watcher (anonymous: leaderboards of published quizzes are public).
    let (snapshots, sink) = AsyncStream.makeStream(of: Scoring_V1_LeaderboardSnapshot.self)
    let watcher = Task {
      try await h.scoring.watchLeaderboard(
        .with {
          $0.quizID = created.id
          $0.topN = 5
        }
      ) { response in
        for try await snapshot in response.messages { sink.yield(snapshot) }
      }
    }
    defer { watcher.cancel() }
    var received = snapshots.makeAsyncIterator()
    let first = await received.next()
    XCTAssertEqual(first?.version, 0)
    XCTAssertEqual(first?.entries, [])

    // Play: see question 0, leave; resume: the same question with its original deadline.
    let firstPlay = try await h.play(player.metadata, first: ScoringSample.start(created.id)) { _ in nil }
    guard case .question(let shown)? = firstPlay.first?.kind else { return XCTFail("expected a question: \(firstPlay)") }
    XCTAssertEqual(shown.index, 0)
    let resumed = try await h.play(player.metadata, first: .with { $0.resume = .with { $0.attemptID = shown.attemptID } }) { event in
      guard case .question(let q)? = event.kind else { return [] }
      switch q.index {
      case 0: return [ScoringSample.answer(q.question.id, ["a"])]
      case 1: return [ScoringSample.answer(q.question.id, ["a", "c"])]
      default: return [ScoringSample.answer(q.question.id, text: "nobody")]
      }
    }
    guard case .question(let again)? = resumed.first?.kind else { return XCTFail("expected a question: \(resumed)") }
    XCTAssertEqual(again.index, 0)
    XCTAssertEqual(again.question.id, ids[0])
    XCTAssertEqual(again.deadlineTime, shown.deadlineTime, "a resumed question keeps its deadline")
    guard case .finished(let finished)? = resumed.last?.kind else { return XCTFail("expected finished: \(resumed)") }
    XCTAssertEqual(finished.attempt.id, shown.attemptID)
    XCTAssertEqual(finished.attempt.score, 3)
    let someoneElse = try await h.user("other@example.com", name: "Oz")
    let resumeOthers = await rpcCode {
      _ = try await h.play(someoneElse.metadata, first: .with { $0.resume = .with { $0.attemptID = shown.attemptID } }) { _ in [] }
    }
    XCTAssertEqual(resumeOthers, .notFound)

    // The watcher sees the finished attempt in a newer snapshot.
    let next = await received.next()
    XCTAssertEqual(next?.version, 1)
    XCTAssertEqual(next?.entries.map(\.userID), [player.id])
    XCTAssertEqual(next?.entries.first?.displayName, "Pat")
    XCTAssertEqual(next?.entries.first?.score, 3)

    // A rename reaches the leaderboard through auth's feed (within a few seconds).
    _ = try await h.authAPI.updateProfile(.with { $0.displayName = "Patricia" }, metadata: player.metadata)
    var name = ""
    for _ in 0..<100 {
      name = try await h.scoring.getLeaderboard(.with { $0.quizID = created.id }).entries.first?.displayName ?? ""
      if name == "Patricia" { break }
      try await Task.sleep(for: .milliseconds(50))
    }
    XCTAssertEqual(name, "Patricia")
  }
}
