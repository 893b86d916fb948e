import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import Logging
import QuizService
import QuizwireProtos
import SQLKit
import ServiceKit
import ServiceLifecycle
import Storage
import Synchronization
import TestSupport
import XCTest

struct NeverHappened: Error, CustomStringConvertible {
  var what: String
  var description: String { "timed out waiting for: \(self.what)" }
}

/// `JobWorker` against real databases (SQLite, and PostgreSQL when configured): every job's
/// effect exactly once, retries with backoff, dead letters, recurring jobs once per slot
/// across replicas, a graceful stop; and the quiz service's `quiz.recompute_stats` after an
/// import.
final class JobWorkerTests: XCTestCase {
  static let logger = Logger(label: "test.jobs") { _ in SwiftLogNoOpLogHandler() }

  static let migrations = [
    JobQueue.migration(version: 1),
    Migration(version: 2, name: "effects") { _ in ["CREATE TABLE effects (kind TEXT NOT NULL, note TEXT NOT NULL)"] },
  ]

  static var fastConfig: JobWorker.Config {
    var config = JobWorker.Config()
    config.concurrency = 3
    config.pollInterval = .milliseconds(10)
    config.maxPollInterval = .milliseconds(50)
    config.backoff = JobBackoff(base: .milliseconds(20), cap: .milliseconds(100), jitter: 0)
    return config
  }

  static func effect(_ kind: String, _ note: String, in uow: UnitOfWork) async throws {
    try await uow.sql.raw("INSERT INTO effects (kind, note) VALUES (\(bind: kind), \(bind: note))").run()
  }

  static func effects(_ db: Database) async throws -> [(kind: String, note: String)] {
    try await db.read { uow in
      try await uow.sql.raw("SELECT kind, note FROM effects").all().map {
        (try $0.decode(column: "kind", as: String.self), try $0.decode(column: "note", as: String.self))
      }
    }
  }

  /// Waits until `condition` holds (checked every 20 ms), failing after `timeout`.
  static func eventually(timeout: Duration = .seconds(20), _ what: String, _ condition: () async throws -> Bool) async throws {
    let end = ContinuousClock.now + timeout
    while try await !condition() {
      guard ContinuousClock.now < end else { throw NeverHappened(what: what) }
      try await Task.sleep(for: .milliseconds(20))
    }
  }

  func testEveryJobTakesEffectOnceFailuresRetryAndPoisonGoesDead() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "worker-test", migrations: Self.migrations).migrate(db)
      let handlers = [
        JobHandler(kind: "test.effect") { job, uow in try await Self.effect(job.kind, "\(job.id)", in: uow) },
        JobHandler(kind: "test.flaky") { job, uow in
          // Writes, then fails on its first two attempts: those writes must roll back.
          try await Self.effect(job.kind, "attempt \(job.attempts)", in: uow)
          if job.attempts < 3 { throw CocoaError(.fileLocking) }
        },
        JobHandler(kind: "test.poison") { _, _ in throw CocoaError(.featureUnsupported) },
        JobHandler(kind: "test.permanent") { _, _ in throw PermanentJobError("cannot parse the payload") },
      ]
      try await db.transaction { uow in
        for _ in 0..<60 { try await JobQueue.enqueue(kind: "test.effect", in: uow) }
        try await JobQueue.enqueue(kind: "test.flaky", in: uow)
        try await JobQueue.enqueue(kind: "test.poison", maxAttempts: 3, in: uow)
        try await JobQueue.enqueue(kind: "test.permanent", in: uow)
      }
      let worker = JobWorker(database: db, handlers: handlers, config: Self.fastConfig, logger: Self.logger)
      let run = Task { try await worker.run() }
      do {
        try await Self.eventually("only dead jobs left") {
          let counts = try await db.read { uow in try await JobQueue.counts(in: uow) }
          return counts.allSatisfy { $0.due + $0.scheduled + $0.running == 0 } && counts.map(\.dead).reduce(0, +) == 2
        }
      } catch {
        worker.stop()
        throw error
      }
      worker.stop()
      try await run.value
      let effects = try await Self.effects(db)
      XCTAssertEqual(effects.filter { $0.kind == "test.effect" }.count, 60)
      XCTAssertEqual(Set(effects.filter { $0.kind == "test.effect" }.map(\.note)).count, 60, "each job once")
      XCTAssertEqual(effects.filter { $0.kind == "test.flaky" }.map(\.note), ["attempt 3"], "failed attempts rolled back")
      let dead = try await db.read { uow in try await JobQueue.dead(in: uow) }
      XCTAssertEqual(dead.map(\.kind).sorted(), ["test.permanent", "test.poison"])
      XCTAssertEqual(dead.first { $0.kind == "test.poison" }?.attempts, 3)
      XCTAssertEqual(dead.first { $0.kind == "test.permanent" }?.attempts, 1, "permanent: no retries")
      XCTAssertEqual(dead.first { $0.kind == "test.permanent" }?.lastError, "cannot parse the payload")
    }
  }

  /// Graceful shutdown through a ServiceGroup: the job running finishes and commits, the rest
  /// of the batch goes back untried, and the worker returns promptly.
  func testGracefulShutdownFinishesTheRunningJobAndGivesTheRestBack() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "worker-test", migrations: Self.migrations).migrate(db)
      let started = Atomic<Int>(0)
      let handler = JobHandler(kind: "test.slow") { job, uow in
        started.add(1, ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(400))
        try await Self.effect(job.kind, "\(job.id)", in: uow)
      }
      try await db.transaction { uow in
        for _ in 0..<3 { try await JobQueue.enqueue(kind: "test.slow", in: uow) }
      }
      var config = Self.fastConfig
      config.concurrency = 1
      config.batchSize = 3
      let worker = JobWorker(database: db, handlers: [handler], config: config, logger: Self.logger)
      let group = ServiceGroup(services: [worker], logger: Self.logger)
      let run = Task { try await group.run() }
      try await Self.eventually("the first job started") { started.load(ordering: .relaxed) == 1 }
      let stopAsked = ContinuousClock.now
      await group.triggerGracefulShutdown()
      try await run.value
      XCTAssertLessThan(ContinuousClock.now - stopAsked, .seconds(2), "stops promptly")
      let effects = try await Self.effects(db)
      XCTAssertEqual(effects.count, 1, "the running job finished")
      XCTAssertEqual(started.load(ordering: .relaxed), 1)
      let left = try await JobQueue.claim(worker: "next", kinds: ["test.slow"], limit: 10, visibility: .seconds(5), in: db)
      XCTAssertEqual(left.map(\.attempts), [1, 1], "given back untried, claimable at once")
    }
  }

  /// Two replicas each keep the next slot of a 200 ms recurring job enqueued: each slot runs
  /// once.
  func testARecurringJobRunsOncePerSlotAcrossReplicas() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "worker-test", migrations: Self.migrations).migrate(db)
      let tick = RecurringJob(kind: "test.tick", every: .milliseconds(200))
      let handler = JobHandler(kind: "test.tick") { job, uow in try await Self.effect(job.kind, job.uniqueKey ?? "none", in: uow) }
      let replicas = (0..<2).map { _ in
        JobWorker(database: db, handlers: [handler], recurring: [tick], config: Self.fastConfig, logger: Self.logger)
      }
      let runs = replicas.map { worker in Task { try await worker.run() } }
      try await Task.sleep(for: .milliseconds(1500))
      for worker in replicas { worker.stop() }
      for run in runs { try await run.value }
      let notes = try await Self.effects(db).map(\.note)
      XCTAssertEqual(Set(notes).count, notes.count, "no slot ran twice: \(notes.sorted())")
      XCTAssertGreaterThanOrEqual(notes.count, 4, "about one run per 200 ms: \(notes.sorted())")
      XCTAssertTrue(notes.allSatisfy { $0.hasPrefix("test.tick@") })
      XCTAssertEqual(tick.nextSlot(afterMs: 1000).runAtMs, 1200)
      XCTAssertEqual(tick.nextSlot(afterMs: 1199).slot, 6)
    }
  }

  /// An import of questions enqueues `quiz.recompute_stats` in its unit of work; the quiz
  /// service's own worker recomputes the statistics row.
  func testAnImportRecomputesTheQuizStatistics() async throws {
    let harness = try await QuizHarness.start()
    do {
      let author = try await harness.user("stats@example.com")
      let quiz = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz(questions: 1) }, metadata: author.metadata)
      _ = try await harness.quiz.importQuestions(metadata: author.metadata) { writer in
        try await writer.write(.with { $0.target = .with { $0.quizID = quiz.id } })
        for i in 0..<4 {
          var question = Sample.question(i)
          question.points = Int32(i + 1)
          try await writer.write(.with { $0.question = question })
        }
      }
      let db = try Database(.sqlite(path: harness.quizDatabasePath), logger: Self.logger)
      do {
        var stats: QuizStatistics?
        try await Self.eventually("statistics recomputed") {
          stats = try await db.read { uow in try await QuizStatisticsRepository.find(quizID: quiz.id, in: uow) }
          return stats != nil
        }
        let stored = try await harness.quiz.getQuiz(.with { $0.id = quiz.id }, metadata: author.metadata)
        XCTAssertEqual(stats?.questionCount, 5)
        XCTAssertEqual(stats?.totalPoints, stored.questions.map { Int($0.points) }.reduce(0, +))
        XCTAssertEqual(stored.questions.suffix(4).map(\.points), [1, 2, 3, 4])
        XCTAssertEqual(stats?.recomputations, 1)
        let left = try await db.read { uow in try await JobQueue.counts(in: uow) }
        XCTAssertTrue(left.allSatisfy { $0.due + $0.running + $0.dead == 0 }, "\(left)")
        let admin = try await harness.quizHost.addresses().admin
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(admin!)/metrics")!)
        let metrics = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(metrics.contains(#"jobs_processed_total{kind="quiz.recompute_stats",outcome="done"} 1"#), metrics)
      } catch {
        try? await db.shutdown()
        throw error
      }
      try await db.shutdown()
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }
}
