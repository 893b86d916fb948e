import Foundation
import SQLKit
import Storage
import Synchronization
import TestSupport
import XCTest

/// The job queue on both dialects (PostgreSQL when QUIZWIRE_TEST_POSTGRES_URL is set; required
/// under QUIZWIRE_REQUIRE_ALL=1): claims, exactly-once completion, backoff, dead letters,
/// unique keys and concurrent claimers.
final class JobQueueTests: XCTestCase {
  static let migrations = [
    JobQueue.migration(version: 1),
    Migration(version: 2, name: "effects") { _ in ["CREATE TABLE effects (job_id BIGINT NOT NULL, worker TEXT NOT NULL)"] },
  ]

  func each(_ body: (Database) async throws -> Void) async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "jobs-test", migrations: Self.migrations).migrate(db)
      try await body(db)
    }
  }

  func enqueue(_ db: Database, _ kind: String = "test.a", key: String? = nil, maxAttempts: Int = 10, nowMs: Int64) async throws -> Int64? {
    try await db.transaction { uow in
      try await JobQueue.enqueue(kind: kind, payload: Data("p".utf8), uniqueKey: key, maxAttempts: maxAttempts, nowMs: nowMs, in: uow)
    }
  }

  func jobCount(_ db: Database) async throws -> Int {
    try await db.read { uow in try await uow.sql.raw("SELECT COUNT(*) AS n FROM jobs").first()!.decode(column: "n", as: Int.self) }
  }

  func testClaimHidesAJobAndCompleteDeletesIt() async throws {
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      _ = try await self.enqueue(db, "test.a", nowMs: t0)
      _ = try await self.enqueue(db, "test.a", nowMs: t0)
      _ = try await self.enqueue(db, "test.b", nowMs: t0)
      let claimed = try await JobQueue.claim(worker: "w1", kinds: ["test.a"], limit: 10, visibility: .seconds(30), nowMs: t0, in: db)
      XCTAssertEqual(claimed.map(\.kind), ["test.a", "test.a"])
      XCTAssertEqual(claimed.map(\.attempts), [1, 1])
      XCTAssertEqual(claimed.first?.lockedBy, "w1")
      XCTAssertEqual(claimed.first?.lockedUntilMs, t0 + 30_000)
      XCTAssertEqual(claimed.first?.payload, Data("p".utf8))
      let again = try await JobQueue.claim(worker: "w2", kinds: ["test.a"], limit: 10, visibility: .seconds(30), nowMs: t0 + 1000, in: db)
      XCTAssertTrue(again.isEmpty, "a claimed job is hidden for the visibility timeout")
      try await db.transaction { uow in try await JobQueue.complete(claimed[0], in: uow) }
      let counts = try await db.read { uow in try await JobQueue.counts(nowMs: t0 + 1000, in: uow) }
      XCTAssertEqual(counts.map(\.kind), ["test.a", "test.b"])
      XCTAssertEqual(counts[0].running, 1)
      XCTAssertEqual(counts[1].due, 1)
      let gone = try await db.read { uow in try await JobQueue.find(id: claimed[0].id, in: uow) }
      XCTAssertNil(gone)
    }
  }

  func testARolledBackEnqueueLeavesNothing() async throws {
    struct Boom: Error {}
    try await self.each { db in
      do {
        try await db.transaction { uow in
          try await JobQueue.enqueue(kind: "test.a", in: uow)
          throw Boom()
        }
        XCTFail("expected the transaction to throw")
      } catch is Boom {}
      let n = try await self.jobCount(db)
      XCTAssertEqual(n, 0)
    }
  }

  /// A worker presumed dead (its visibility ran out) finishes after another claimed the job:
  /// its completion throws `JobLost` and its effect rolls back; only the new claim's effect stays.
  func testALostClaimRollsItsEffectBack() async throws {
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      _ = try await self.enqueue(db, nowMs: t0)
      let first = try await JobQueue.claim(worker: "slow", kinds: ["test.a"], limit: 1, visibility: .seconds(2), nowMs: t0, in: db)
      let second = try await JobQueue.claim(worker: "fast", kinds: ["test.a"], limit: 1, visibility: .seconds(2), nowMs: t0 + 2000, in: db)
      XCTAssertEqual(first.count, 1)
      XCTAssertEqual(second.map(\.id), first.map(\.id), "reclaimed once the visibility timeout is over")
      XCTAssertEqual(second.first?.attempts, 2)
      do {
        try await db.transaction { uow in
          try await uow.sql.raw("INSERT INTO effects (job_id, worker) VALUES (\(bind: first[0].id), 'slow')").run()
          try await JobQueue.complete(first[0], in: uow)
        }
        XCTFail("the stale claim must not complete")
      } catch let lost as JobLost {
        XCTAssertEqual(lost.id, first[0].id)
      }
      try await db.transaction { uow in
        try await JobQueue.complete(second[0], in: uow)
        try await uow.sql.raw("INSERT INTO effects (job_id, worker) VALUES (\(bind: second[0].id), 'fast')").run()
      }
      let effects = try await db.read { uow in
        try await uow.sql.raw("SELECT worker FROM effects").all().map { try $0.decode(column: "worker", as: String.self) }
      }
      XCTAssertEqual(effects, ["fast"])
      let remaining = try await self.jobCount(db)
      XCTAssertEqual(remaining, 0)
      // The stale claim's failure report changes nothing either.
      let outcome = try await db.transaction { uow in try await JobQueue.fail(first[0], error: "late", in: uow) }
      XCTAssertEqual(outcome, .lost)
    }
  }

  func testBackoffDoublesUpToTheCap() {
    let backoff = JobBackoff(base: .seconds(1), cap: .seconds(10), jitter: 0)
    XCTAssertEqual((1...6).map { backoff.nominalDelay(afterAttempt: $0) }, [1, 2, 4, 8, 10, 10].map { Duration.seconds($0) })
    XCTAssertEqual(backoff.delay(afterAttempt: 3), .seconds(4), "no jitter: exact")
    XCTAssertEqual(backoff.nominalDelay(afterAttempt: 1_000_000), .seconds(10), "no overflow")
    XCTAssertEqual(JobBackoff(base: .milliseconds(Int64.max / 4), cap: .seconds(3600), jitter: 0).nominalDelay(afterAttempt: 40), .seconds(3600))
    let jittered = JobBackoff(base: .seconds(1), cap: .seconds(10), jitter: 0.5)
    for _ in 0..<200 {
      let d = jittered.delay(afterAttempt: 2)
      XCTAssertTrue(d >= .seconds(2) && d <= .seconds(3), "\(d)")
    }
  }

  func testAFailedJobIsRescheduledWithBackoff() async throws {
    try await self.each { db in
      let backoff = JobBackoff(base: .seconds(10), cap: .seconds(60), jitter: 0)
      let t0 = JobQueue.currentMs()
      _ = try await self.enqueue(db, nowMs: t0)
      var now = t0
      for attempt in 1...3 {
        let claimed = try await JobQueue.claim(worker: "w", kinds: ["test.a"], limit: 1, visibility: .seconds(5), nowMs: now, in: db)
        XCTAssertEqual(claimed.first?.attempts, attempt)
        let outcome = try await db.transaction { uow in
          try await JobQueue.fail(claimed[0], error: "boom \(attempt)", backoff: backoff, nowMs: now, in: uow)
        }
        let expected = now + 10_000 << Int64(attempt - 1)
        XCTAssertEqual(outcome, .retry(atMs: expected))
        let early = try await JobQueue.claim(worker: "w", kinds: ["test.a"], limit: 1, visibility: .seconds(5), nowMs: expected - 1, in: db)
        XCTAssertTrue(early.isEmpty, "not before its backoff is over")
        let job = try await db.read { uow in try await JobQueue.find(id: claimed[0].id, in: uow) }
        XCTAssertEqual(job?.lastError, "boom \(attempt)")
        XCTAssertNil(job?.lockedBy)
        now = expected
      }
    }
  }

  func testOutOfAttemptsIsDeadUntilRetried() async throws {
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      let id = try await self.enqueue(db, maxAttempts: 3, nowMs: t0)
      let longError = String(repeating: "x", count: 5000)
      var outcomes: [JobQueue.FailOutcome] = []
      var now = t0
      for _ in 1...3 {
        let claimed = try await JobQueue.claim(worker: "w", kinds: ["test.a"], limit: 1, visibility: .seconds(5), nowMs: now, in: db)
        XCTAssertEqual(claimed.count, 1)
        let backoff = JobBackoff(base: .milliseconds(1), cap: .milliseconds(1), jitter: 0)
        outcomes.append(try await db.transaction { uow in try await JobQueue.fail(claimed[0], error: longError, backoff: backoff, nowMs: now, in: uow) })
        now += 10
      }
      XCTAssertEqual(outcomes, [.retry(atMs: t0 + 1), .retry(atMs: t0 + 11), .dead])
      let none = try await JobQueue.claim(worker: "w", kinds: ["test.a"], limit: 1, visibility: .seconds(5), nowMs: now + 60_000, in: db)
      XCTAssertTrue(none.isEmpty, "a dead job is never claimed")
      let dead = try await db.read { uow in try await JobQueue.dead(in: uow) }
      XCTAssertEqual(dead.map(\.id), [id!])
      XCTAssertEqual(dead.first?.state, .dead)
      XCTAssertEqual(dead.first?.lastError?.count, JobQueue.maxErrorLength, "stored cut")
      let counts = try await db.read { uow in try await JobQueue.counts(in: uow) }
      XCTAssertEqual(counts.first?.dead, 1)

      let retried = try await db.transaction { uow in try await JobQueue.retry(id: id!, nowMs: now, in: uow) }
      XCTAssertTrue(retried)
      let notDead = try await db.transaction { uow in try await JobQueue.retry(id: id!, nowMs: now, in: uow) }
      XCTAssertFalse(notDead, "only dead jobs are retried")
      let again = try await JobQueue.claim(worker: "w", kinds: ["test.a"], limit: 1, visibility: .seconds(5), nowMs: now, in: db)
      XCTAssertEqual(again.first?.attempts, 1, "fresh attempts")

      // Permanent failures skip the remaining attempts.
      let outcome = try await db.transaction { uow in try await JobQueue.fail(again[0], error: "bad payload", permanent: true, in: uow) }
      XCTAssertEqual(outcome, .dead)
    }
  }

  func testAJobAbandonedOnItsLastAttemptIsBuried() async throws {
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      _ = try await self.enqueue(db, maxAttempts: 1, nowMs: t0)
      let claimed = try await JobQueue.claim(worker: "dies", kinds: ["test.a"], limit: 1, visibility: .seconds(1), nowMs: t0, in: db)
      XCTAssertEqual(claimed.count, 1)
      let early = try await db.transaction { uow in try await JobQueue.buryExhausted(nowMs: t0 + 500, in: uow) }
      XCTAssertEqual(early, 0, "still within its visibility timeout")
      let buried = try await db.transaction { uow in try await JobQueue.buryExhausted(nowMs: t0 + 1000, in: uow) }
      XCTAssertEqual(buried, 1)
      let dead = try await db.read { uow in try await JobQueue.dead(in: uow) }
      XCTAssertEqual(dead.count, 1)
    }
  }

  func testAReleasedJobIsClaimableAtOnceWithoutLosingAnAttempt() async throws {
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      _ = try await self.enqueue(db, nowMs: t0)
      let claimed = try await JobQueue.claim(worker: "w", kinds: ["test.a"], limit: 1, visibility: .seconds(60), nowMs: t0, in: db)
      let released = try await db.transaction { uow in try await JobQueue.release(claimed[0], in: uow) }
      XCTAssertTrue(released)
      let again = try await JobQueue.claim(worker: "w2", kinds: ["test.a"], limit: 1, visibility: .seconds(60), nowMs: t0, in: db)
      XCTAssertEqual(again.first?.attempts, 1)
    }
  }

  func testAUniqueKeyIsEnqueuedOnce() async throws {
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      let first = try await self.enqueue(db, "test.recurring", key: "test.recurring@7", nowMs: t0)
      let second = try await self.enqueue(db, "test.recurring", key: "test.recurring@7", nowMs: t0)
      let other = try await self.enqueue(db, "test.recurring", key: "test.recurring@8", nowMs: t0)
      XCTAssertNotNil(first)
      XCTAssertNil(second, "ON CONFLICT DO NOTHING")
      XCTAssertNotNil(other)
      _ = try await self.enqueue(db, "test.recurring", nowMs: t0)
      _ = try await self.enqueue(db, "test.recurring", nowMs: t0)
      let n = try await self.jobCount(db)
      XCTAssertEqual(n, 4, "jobs without a key never conflict")
    }
  }

  /// Eight claimers race over 400 jobs in batches: every job is claimed exactly once.
  func testConcurrentClaimersNeverGetTheSameJob() async throws {
    let total = 400
    try await self.each { db in
      let t0 = JobQueue.currentMs()
      try await db.transaction { uow in
        for _ in 0..<total { try await JobQueue.enqueue(kind: "test.a", nowMs: t0, in: uow) }
      }
      let ids = try await withThrowingTaskGroup(of: [Int64].self) { group in
        for worker in 0..<8 {
          group.addTask {
            var mine: [Int64] = []
            while true {
              let jobs = try await JobQueue.claim(worker: "w\(worker)", kinds: ["test.a"], limit: 5, visibility: .seconds(60), in: db)
              if jobs.isEmpty { return mine }
              mine += jobs.map(\.id)
            }
          }
        }
        var all: [Int64] = []
        for try await batch in group { all += batch }
        return all
      }
      XCTAssertEqual(ids.count, total, "claimed \(ids.count) times for \(total) jobs")
      XCTAssertEqual(Set(ids).count, total, "no job claimed twice")
    }
  }
}
