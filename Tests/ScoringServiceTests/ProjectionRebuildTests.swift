import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import ScoringService

/// The projections rebuilt from the log equal the incrementally maintained ones, after a
/// randomized history of 2,000 attempts (seeded: a failure reproduces), on both databases.
final class ProjectionRebuildTests: XCTestCase {
  struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      self.state &+= 0x9E37_79B9_7F4A_7C15
      var z = self.state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  static func tables(_ db: Database) async throws -> [String: [String]] {
    let queries: [String: SQLQueryString] = [
      "attempts": """
      SELECT id, quiz_id, user_id, quiz_author_id, idempotency_key, state, score, max_score, current_index, question_count, seq,
        start_ms, finish_ms, last_deadline_ms FROM attempts ORDER BY id
      """,
      "leaderboard": "SELECT quiz_id, user_id, attempt_id, score, max_score, duration_ms, finish_ms FROM leaderboard ORDER BY quiz_id, user_id",
      "user_stats": "SELECT user_id, attempts, finished, total_score FROM user_stats ORDER BY user_id",
    ]
    var result: [String: [String]] = [:]
    for (table, query) in queries {
      result[table] = try await db.read { uow in
        try await uow.sql.raw(query).all().map { row in
          try row.allColumns.map { column in
            if try row.decodeNil(column: column) { return "\(column)=nil" }
            if let n = try? row.decode(column: column, as: Int64.self) { return "\(column)=\(n)" }
            return "\(column)=\(try row.decode(column: column, as: String.self))"
          }.joined(separator: ",")
        }
      }
    }
    return result
  }

  func testRebuiltProjectionsEqualTheIncrementalOnes() async throws {
    try await TestDatabases.each { db in
      try await AttemptRepositoryTests.migrate(db)
      var rng = SeededGenerator(state: 14)
      let repo = AttemptRepository()
      let keys = AttemptFoldTests.keys
      let choices: [[String]] = [["a"], ["b"], ["a", "c"], ["a"], ["true"], ["false"]]
      // 40 batches of 50 attempts, each batch one unit of work.
      for batch in 0..<40 {
        var plans: [(AttemptEvent.Started, [AttemptEvent])] = []
        for i in 0..<50 {
          let n = batch * 50 + i
          let start = Int64.random(in: 0...1_000_000, using: &rng)
          let started = AttemptEvent.Started(
            attemptID: String(format: "at_%05d", n), quizID: "qz_\(Int.random(in: 0..<5, using: &rng))",
            userID: "u\(Int.random(in: 0..<40, using: &rng))", quizAuthorID: "author", quizEtag: "e", timeLimitMs: 10_000,
            questions: keys, idempotencyKey: Bool.random(using: &rng) ? "k\(n)" : nil, atMs: start)
          var state = AttemptState(started: started)
          var events: [AttemptEvent] = []
          var now = start
          for key in keys where Int.random(in: 0..<5, using: &rng) > 0 {
            now += Int64.random(in: 0...12_000, using: &rng)  // sometimes late
            let event = AttemptEvent.answerRecorded(
              .init(
                questionID: key.id, choiceIDs: choices.randomElement(using: &rng)!, text: Bool.random(using: &rng) ? "hopper" : "x",
                atMs: now))
            let due = state.catchUp(nowMs: now).filter { if case .finished = $0 { false } else { true } }
            for e in due + [event] { state.apply(e) }
            events += due + [event]
            if Int.random(in: 0..<10, using: &rng) == 0 {
              events.append(event)  // a duplicate: kept once
              state.apply(event)
            }
          }
          if Int.random(in: 0..<4, using: &rng) > 0 { events += state.catchUp(nowMs: now + 100_000) }  // most finish
          plans.append((started, events))
        }
        try await db.transaction { uow in
          for (started, events) in plans {
            let state = try await repo.start(started, in: uow)
            _ = try await repo.append(events, to: state, in: uow)
          }
        }
      }
      let incremental = try await Self.tables(db)
      XCTAssertEqual(incremental["attempts"]?.count, 2_000)
      XCTAssertGreaterThan(incremental["leaderboard"]?.count ?? 0, 100, "\(db.dialect)")
      let versionsBefore = try await db.read { uow in try await LeaderboardRepository().version(quizID: "qz_0", in: uow) }
      let folded = try await db.transaction { uow in try await ProjectionRebuild().run(in: uow) }
      XCTAssertEqual(folded, 2_000)
      let rebuilt = try await Self.tables(db)
      for table in ["attempts", "leaderboard", "user_stats"] {
        XCTAssertEqual(rebuilt[table], incremental[table], "\(db.dialect): \(table)")
      }
      let versionsAfter = try await db.read { uow in try await LeaderboardRepository().version(quizID: "qz_0", in: uow) }
      XCTAssertEqual(versionsAfter.version, versionsBefore.version + 1, "versions only grow")
    }
  }

  /// `quizwire scoring rebuild-projections` on a service's SQLite file: the projections come
  /// back from the log (play counters included), and the run is on the audit trail.
  func testTheRebuildCommandRestoresTheProjectionsAndIsAudited() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let db = try Database(.sqlite(path: dir + "/scoring.sqlite"), logger: TestDatabases.logger)
    try await AttemptRepositoryTests.migrate(db)
    for n in 0..<6 { _ = try await AttemptRepositoryTests.play("at_\(n)", user: "u\(n % 3)", correct: n % 4, at: Int64(n) * 10_000, in: db) }
    let before = try await Self.tables(db)
    // Lost projections (and counters that were never flushed).
    try await db.transaction { uow in
      try await uow.write("DELETE FROM leaderboard")
      try await uow.write("UPDATE user_stats SET finished = 0, total_score = 0")
    }
    try await db.shutdown()

    let run = try ChildCommand.run([try ServedProcess.quizwireExecutable(), "scoring", "rebuild-projections", "--data-dir", dir])
    XCTAssertEqual(run.status, 0, run.stdout)
    XCTAssertTrue(run.stdout.contains("rebuilt the projections from 6 attempts"), run.stdout)
    let audit = run.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
      .first { $0["event"] as? String == "audit" }
    XCTAssertEqual(audit?["action"] as? String, "scoring.rebuild_projections")
    XCTAssertEqual(audit?["outcome"] as? String, "success")

    let reopened = try Database(.sqlite(path: dir + "/scoring.sqlite"), logger: TestDatabases.logger)
    let after = try await Self.tables(reopened)
    try await reopened.shutdown()
    XCTAssertEqual(after["leaderboard"], before["leaderboard"])
    XCTAssertEqual(after["attempts"], before["attempts"])
    XCTAssertEqual(after["user_stats"], before["user_stats"])
    let counters = try await Self.counters(dir)
    XCTAssertEqual(counters, ["u0": 8, "u1": 8, "u2": 8], "two attempts of four answers each, from the log")
  }

  static func counters(_ dir: String) async throws -> [String: Int64] {
    let db = try Database(.sqlite(path: dir + "/scoring.sqlite"), logger: TestDatabases.logger)
    let rows = try await db.read { uow in try await uow.sql.raw("SELECT user_id, answers_given FROM user_stats").all() }
    try await db.shutdown()
    var found: [String: Int64] = [:]
    for row in rows { found[try row.decode(column: "user_id", as: String.self)] = try row.decode(column: "answers_given", as: Int64.self) }
    return found
  }
}
