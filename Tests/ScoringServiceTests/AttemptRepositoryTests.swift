import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import ScoringService

/// The event log, read model and projections on SQLite and PostgreSQL
/// (`QUIZWIRE_TEST_POSTGRES_URL`; required under `QUIZWIRE_REQUIRE_ALL=1`).
final class AttemptRepositoryTests: XCTestCase {
  static func migrate(_ db: Database) async throws {
    _ = try await Migrator(service: ScoringMigrations.service, migrations: ScoringMigrations.all).migrate(db)
  }

  static func started(_ id: String, user: String = "u1", quiz: String = "qz_1", key: String? = nil, at ms: Int64 = 1_000) -> AttemptEvent.Started {
    AttemptEvent.Started(
      attemptID: id, quizID: quiz, userID: user, quizAuthorID: "author", quizEtag: "e1", timeLimitMs: 10_000,
      questions: AttemptFoldTests.keys, idempotencyKey: key, atMs: ms)
  }

  /// Starts, answers the first `correct` questions right (one second apart) and finishes.
  static func play(_ id: String, user: String, quiz: String = "qz_1", correct: Int, at ms: Int64, in db: Database) async throws -> Int64? {
    let repo = AttemptRepository()
    let answers: [[String]] = [["a"], ["a", "c"], ["true"], []]
    return try await db.transaction { uow in
      let state = try await repo.start(started(id, user: user, quiz: quiz, at: ms), in: uow)
      var events: [AttemptEvent] = []
      for (i, key) in AttemptFoldTests.keys.enumerated() {
        let right = i < correct
        events.append(
          .answerRecorded(
            .init(
              questionID: key.id, choiceIDs: right ? answers[i] : ["zz"], text: right && i == 3 ? "hopper" : "no",
              atMs: ms + Int64(i + 1) * 1_000)))
      }
      events.append(.finished(.init(atMs: ms + 4_000)))
      return try await repo.append(events, to: state, in: uow).leaderboardVersion
    }
  }

  func testAnAttemptIsFoldedFromItsLogAndTheReadModelFollows() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let repo = AttemptRepository()
      let state = try await db.transaction { uow in try await repo.start(Self.started("at_1", key: "k1"), in: uow) }
      XCTAssertEqual(state.seq, 1)
      let after = try await db.transaction { uow in
        try await repo.append([.answerRecorded(.init(questionID: "q1", choiceIDs: ["a"], atMs: 2_000))], to: state, in: uow)
      }
      XCTAssertNil(after.leaderboardVersion)
      let loaded = try await db.read { uow in try await repo.find(id: "at_1", in: uow) }
      XCTAssertEqual(loaded, after.state, "\(db.dialect)")
      XCTAssertEqual(loaded?.score, 1)
      XCTAssertEqual(loaded?.currentIndex, 1)
      let rows = try await db.read { uow in try await repo.list(.user("u1"), limit: 10, after: nil, in: uow) }
      XCTAssertEqual(rows.map(\.id), ["at_1"])
      XCTAssertEqual(rows.first?.score, 1)
      XCTAssertEqual(rows.first?.currentIndex, 1)
      XCTAssertFalse(rows.first?.finished ?? true)
      let missing = try await db.read { uow in try await repo.find(id: "at_none", in: uow) }
      XCTAssertNil(missing)
    }
  }

  func testTheIdempotencyKeyAndTheSequenceAreUniqueConstraints() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let repo = AttemptRepository()
      let state = try await db.transaction { uow in try await repo.start(Self.started("at_1", key: "k1"), in: uow) }
      do {
        _ = try await db.transaction { uow in try await repo.start(Self.started("at_2", key: "k1"), in: uow) }
        XCTFail("a second start with the same key must fail")
      } catch let error as StorageError {
        XCTAssertEqual(error, .uniqueViolation, "\(db.dialect)")
      }
      let found = try await db.read { uow in try await repo.find(userID: "u1", idempotencyKey: "k1", in: uow) }
      XCTAssertEqual(found, "at_1")
      // Another user may use the same key; no key never conflicts.
      _ = try await db.transaction { uow in try await repo.start(Self.started("at_3", user: "u2", key: "k1"), in: uow) }
      _ = try await db.transaction { uow in try await repo.start(Self.started("at_4"), in: uow) }
      _ = try await db.transaction { uow in try await repo.start(Self.started("at_5"), in: uow) }
      let noSecond = try await db.read { uow in try await repo.find(id: "at_2", in: uow) }
      XCTAssertNil(noSecond, "the refused start left no event behind")

      // Two writers that folded the same state: the second append conflicts, nothing counts twice.
      _ = try await db.transaction { uow in
        try await repo.append([.answerRecorded(.init(questionID: "q1", choiceIDs: ["a"], atMs: 2_000))], to: state, in: uow)
      }
      do {
        _ = try await db.transaction { uow in
          try await repo.append([.answerRecorded(.init(questionID: "q1", choiceIDs: ["b"], atMs: 2_001))], to: state, in: uow)
        }
        XCTFail("a stale append must fail")
      } catch let error as StorageError {
        XCTAssertEqual(error, .uniqueViolation)
      }
      let loaded = try await db.read { uow in try await repo.find(id: "at_1", in: uow) }
      XCTAssertEqual(loaded?.answers.map(\.choiceIDs), [["a"]])
      let stats = try await db.read { uow in try await LeaderboardRepository().userStats(userID: "u1", in: uow) }
      XCTAssertEqual(stats.attempts, 3, "at_1, at_4, at_5")
    }
  }

  func testFinishingProjectsTheLeaderboardStatsAndTheOutbox() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let board = LeaderboardRepository()
      let v1 = try await Self.play("at_1", user: "u1", correct: 2, at: 10_000, in: db)  // 4 points
      let v2 = try await Self.play("at_2", user: "u2", correct: 4, at: 10_000, in: db)  // 11
      let v3 = try await Self.play("at_3", user: "u3", correct: 2, at: 5_000, in: db)  // 4, same duration, earlier finish
      let v4 = try await Self.play("at_4", user: "u4", correct: 0, at: 1_000, in: db)  // 0 is on the board
      XCTAssertEqual([v1, v2, v3, v4], [1, 2, 3, 4], "\(db.dialect)")
      let worse = try await Self.play("at_5", user: "u2", correct: 1, at: 20_000, in: db)
      XCTAssertNil(worse, "a worse attempt leaves the board and its version alone")
      let better = try await Self.play("at_6", user: "u4", correct: 3, at: 30_000, in: db)  // 6
      XCTAssertEqual(better, 5)
      let other = try await Self.play("at_7", user: "u1", quiz: "qz_2", correct: 1, at: 1_000, in: db)
      XCTAssertEqual(other, 1, "versions are per quiz")

      let page = try await db.read { uow in try await board.page(quizID: "qz_1", offset: 0, limit: 10, in: uow) }
      XCTAssertEqual(page.map(\.attemptID), ["at_2", "at_6", "at_3", "at_1"])
      XCTAssertEqual(page.map(\.score), [11, 6, 4, 4])
      let second = try await db.read { uow in try await board.page(quizID: "qz_1", offset: 2, limit: 1, in: uow) }
      XCTAssertEqual(second.map(\.attemptID), ["at_3"])
      let version = try await db.read { uow in try await board.version(quizID: "qz_1", in: uow) }
      XCTAssertEqual(version.version, 5)
      XCTAssertFalse(version.hidden)

      let stats = try await db.read { uow in try await board.userStats(userID: "u2", in: uow) }
      XCTAssertEqual(stats.attempts, 2)
      XCTAssertEqual(stats.finished, 2)
      XCTAssertEqual(stats.totalScore, 12)
      XCTAssertEqual(stats.best["qz_1"]?.attemptID, "at_2")

      let outbox = try await db.read { uow in try await Outbox.read(after: 0, limit: 100, in: uow) }
      XCTAssertEqual(outbox.count, 7, "one attempt.finished per finished attempt")
      XCTAssertEqual(Set(outbox.map(\.type)), [AttemptRepository.finishedEventType])
      XCTAssertEqual(outbox.first?.key, "at_1")

      let hidden = try await db.transaction { uow in try await board.hide(quizID: "qz_1", in: uow) }
      XCTAssertEqual(hidden, 6)
      let after = try await db.read { uow in try await board.version(quizID: "qz_1", in: uow) }
      XCTAssertTrue(after.hidden)
      let abandoned = try await db.read { uow in try await AttemptRepository().abandoned(beforeMs: .max, limit: 10, in: uow) }
      XCTAssertEqual(abandoned, [], "finished attempts are never abandoned")
    }
  }

  func testAbandonedAttemptsAreFinishedPastTheirLastDeadlineOnly() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let repo = AttemptRepository()
      // Started at 1_000 with 4 questions of 10 s: the last deadline is 41_000.
      let state = try await db.transaction { uow in try await repo.start(Self.started("at_1", at: 1_000), in: uow) }
      _ = try await db.transaction { uow in
        try await repo.append([.answerRecorded(.init(questionID: "q1", choiceIDs: ["a"], atMs: 2_000))], to: state, in: uow)
      }
      _ = try await db.transaction { uow in try await repo.start(Self.started("at_2", user: "u2", at: 100_000), in: uow) }
      let early = try await db.transaction { uow in try await repo.finishAbandoned(nowMs: 32_000, limit: 10, in: uow) }
      XCTAssertEqual(early, [], "\(db.dialect): not past the last deadline (32_000) yet")
      let changed = try await db.transaction { uow in try await repo.finishAbandoned(nowMs: 32_001, limit: 10, in: uow) }
      XCTAssertEqual(changed, ["qz_1"])
      let finished = try await db.read { uow in try await repo.find(id: "at_1", in: uow) }
      XCTAssertEqual(finished?.isFinished, true)
      XCTAssertEqual(finished?.score, 1, "the answered question counts, the rest score 0")
      XCTAssertEqual(finished?.finishMs, 32_000)
      XCTAssertEqual(finished?.answers.map(\.late), [false, true, true, true])
      let other = try await db.read { uow in try await repo.find(id: "at_2", in: uow) }
      XCTAssertEqual(other?.isFinished, false, "a running attempt stays")
      let again = try await db.transaction { uow in try await repo.finishAbandoned(nowMs: 32_001, limit: 10, in: uow) }
      XCTAssertEqual(again, [])
      let board = try await db.read { uow in try await LeaderboardRepository().page(quizID: "qz_1", offset: 0, limit: 10, in: uow) }
      XCTAssertEqual(board.map(\.attemptID), ["at_1"])
    }
  }
}
