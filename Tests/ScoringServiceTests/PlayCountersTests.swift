import Foundation
import Logging
import SQLKit
import ServiceLifecycle
import Storage
import TestSupport
import XCTest

@testable import ScoringService

/// The write-behind play counters on SQLite and PostgreSQL: batched until the interval or the
/// update bound, flushed on drain, and a flush killed mid-way is repaired from the log by
/// `ProjectionRebuild` (the log is the truth; the counters only trail it).
final class PlayCountersTests: XCTestCase {
  static let logger = Logger(label: "test.play-counters")
  struct Stopped: Error {}

  /// Plays `users` × 2 attempts the way the service does (one unit of work per answer) and
  /// hands every update to `counters`; returns the log-derived counters per user.
  static func play(users: Int, in db: Database, counters: PlayCounters) async throws -> [String: PlayCounters.Delta] {
    let repo = AttemptRepository()
    var expected: [String: PlayCounters.Delta] = [:]
    for u in 0..<users {
      for a in 0..<2 {
        let id = "at_\(u)_\(a)"
        let start = Int64(1_000 + a * 100_000)
        var state = try await db.transaction { uow in
          try await repo.start(AttemptRepositoryTests.started(id, user: "u\(u)", at: start), in: uow)
        }
        // Question 0 answered after 1.5 s, question 1 timed out (10 s limit), then answers.
        let steps: [[AttemptEvent]] = [
          [.answerRecorded(.init(questionID: "q1", choiceIDs: ["a"], atMs: start + 1_500))],
          [.answerRecorded(.init(questionID: "q2", timedOut: true, atMs: start + 11_500))],
          [.answerRecorded(.init(questionID: "q3", choiceIDs: ["true"], atMs: start + 12_000))],
          [.answerRecorded(.init(questionID: "q4", text: "hopper", atMs: start + 12_250)), .finished(.init(atMs: start + 12_250))],
        ]
        for events in steps {
          let before = state
          state = try await db.transaction { uow in try await repo.append(events, to: before, in: uow).state }
          counters.record(before: before, after: state)
        }
        expected["u\(u)", default: .init()].answers += state.answersGiven
        expected["u\(u)", default: .init()].playedMs += state.playedMs
      }
    }
    return expected
  }

  static func stored(_ db: Database) async throws -> [String: PlayCounters.Delta] {
    let rows = try await db.read { uow in try await uow.sql.raw("SELECT user_id, answers_given, time_played_ms FROM user_stats").all() }
    var found: [String: PlayCounters.Delta] = [:]
    for row in rows {
      found[try row.decode(column: "user_id", as: String.self)] = .init(
        answers: try row.decode(column: "answers_given", as: Int64.self), playedMs: try row.decode(column: "time_played_ms", as: Int64.self))
    }
    return found
  }

  func testCountersAreHeldUntilTheDrainFlushesThem() async throws {
    try await TestDatabases.each { db in
      try await AttemptRepositoryTests.migrate(db)
      let counters = PlayCounters(db: db, interval: .seconds(3600), maxUpdates: 100_000, logger: Self.logger)
      let group = ServiceGroup(configuration: .init(services: [.init(service: counters)], gracefulShutdownSignals: [], logger: Self.logger))
      let running = Task { try await group.run() }
      let expected = try await Self.play(users: 5, in: db, counters: counters)
      XCTAssertEqual(expected["u0"], .init(answers: 6, playedMs: 24_500), "\(db.dialect): 3 answers and 12.25 s per attempt; the time-out is no answer")
      XCTAssertEqual(counters.statistics.pending, 40)
      let before = try await Self.stored(db)
      XCTAssertEqual(before.values.map(\.answers).reduce(0, +), 0, "\(db.dialect): written behind, nothing yet")

      await group.triggerGracefulShutdown()
      try await running.value
      let drained = try await Self.stored(db)
      XCTAssertEqual(drained, expected, "\(db.dialect): the drain flushed everything")
      XCTAssertEqual(counters.statistics.pending, 0)
      XCTAssertEqual(counters.statistics.flushedUpdates, 40)
    }
  }

  func testTheUpdateBoundFlushesWithoutWaitingForTheInterval() async throws {
    try await TestDatabases.each { db in
      try await AttemptRepositoryTests.migrate(db)
      let counters = PlayCounters(db: db, interval: .seconds(3600), maxUpdates: 8, logger: Self.logger)
      let group = ServiceGroup(configuration: .init(services: [.init(service: counters)], gracefulShutdownSignals: [], logger: Self.logger))
      let running = Task { try await group.run() }
      _ = try await Self.play(users: 1, in: db, counters: counters)  // 8 updates
      let deadline = ContinuousClock.now + .seconds(5)
      while try await Self.stored(db)["u0"]?.answers != 6, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
      let flushed = try await Self.stored(db)
      XCTAssertEqual(flushed["u0"], .init(answers: 6, playedMs: 24_500), "\(db.dialect): 8 updates reached the bound")
      await group.triggerGracefulShutdown()
      try await running.value
    }
  }

  func testAFlushKilledMidwayIsRepairedByTheRebuildFromTheLog() async throws {
    try await TestDatabases.each { db in
      try await AttemptRepositoryTests.migrate(db)
      // One user per transaction; the flush dies after the second commit, as a process would.
      let counters = PlayCounters(
        db: db, interval: .seconds(3600), maxUpdates: 100_000, chunkSize: 1, logger: Self.logger,
        afterChunk: { written in if written == 2 { throw Stopped() } })
      let expected = try await Self.play(users: 5, in: db, counters: counters)
      do {
        try await counters.flush()
        XCTFail("\(db.dialect): the flush was to die after two users")
      } catch is Stopped {}
      let partial = try await Self.stored(db)
      XCTAssertEqual(partial["u0"], expected["u0"], "\(db.dialect): the first chunks committed")
      XCTAssertEqual(partial["u1"], expected["u1"])
      for u in 2..<5 { XCTAssertEqual(partial["u\(u)"]?.answers, 0, "\(db.dialect): u\(u) was lost with the process") }

      // The process is gone with its pending counters; the log still has every answer.
      let folded = try await db.transaction { uow in try await ProjectionRebuild().run(in: uow) }
      XCTAssertEqual(folded, 10)
      let rebuilt = try await Self.stored(db)
      XCTAssertEqual(rebuilt, expected, "\(db.dialect): the rebuild derives the counters from the log")
    }
  }
}
