import Foundation
import GRPCCore
import Logging
import SQLKit
import Storage
import TestSupport
import XCTest

/// Writers queue as tasks behind SQLite's one writer connection; reads don't queue behind
/// them; a wait that runs out is `StorageError.busy` (RESOURCE_EXHAUSTED), while a database
/// that can't be reached stays `unavailable`.
final class DatabaseContentionTests: XCTestCase {
  /// A transaction (or read) that holds its connection until `release()`.
  final class Held: Sendable {
    let task: Task<Void, any Error>
    private let stop: AsyncStream<Void>.Continuation
    private let entered: AsyncStream<Void>

    init(_ db: Database, transaction: Bool) {
      let (stream, stop) = AsyncStream<Void>.makeStream()
      let (entered, enter) = AsyncStream<Void>.makeStream()
      self.stop = stop
      self.entered = entered
      self.task = Task {
        let body: @Sendable (UnitOfWork) async throws -> Void = { uow in
          if transaction { try await uow.write("INSERT INTO counters (id, n) VALUES (\(bind: "held"), \(bind: 0))") }
          enter.finish()
          for await _ in stream {}
        }
        if transaction { try await db.transaction(body) } else { try await db.read(body) }
      }
    }

    /// Returns once the body holds its connection.
    func holding() async { for await _ in self.entered {} }

    func release() async throws {
      self.stop.finish()
      try await self.task.value
    }
  }

  static func sqlite(_ limits: Database.Limits = Database.Limits()) async throws -> (Database, String) {
    let dir = try TestDatabases.temporaryDirectory()
    let db = try Database(.sqlite(path: dir + "/contention.sqlite"), limits: limits, logger: TestDatabases.logger)
    try await db.transaction { uow in try await uow.write("CREATE TABLE counters (id TEXT PRIMARY KEY, n BIGINT NOT NULL)") }
    return (db, dir)
  }

  func testConcurrentSQLiteWritersAllCommitAndReadsDontWaitForThem() async throws {
    let (db, dir) = try await Self.sqlite()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // More writers than threads, readers or connections: they queue as tasks, in order.
    try await withThrowingTaskGroup(of: Void.self) { group in
      for i in 0..<64 {
        group.addTask {
          try await db.transaction { uow in try await uow.write("INSERT INTO counters (id, n) VALUES (\(bind: "c\(i)"), \(bind: i))") }
        }
      }
      try await group.waitForAll()
    }
    let count = try await db.read { uow in try await uow.sql.raw("SELECT COUNT(*) AS n FROM counters").first()?.decode(column: "n", as: Int.self) }
    XCTAssertEqual(count, 64)

    // While a write transaction is open, reads and the readiness ping still answer.
    let held = Held(db, transaction: true)
    await held.holding()
    let start = ContinuousClock.now
    try await db.ping()
    let seen = try await db.read { uow in try await uow.sql.raw("SELECT COUNT(*) AS n FROM counters").first()?.decode(column: "n", as: Int.self) }
    XCTAssertEqual(seen, 64, "a reader sees the last commit, not the open transaction")
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(2), "reads did not wait for the writer")
    try await held.release()
    try await db.shutdown()
  }

  func testAWriterThatWaitsTooLongIsBusyWithARetryHint() async throws {
    var limits = Database.Limits()
    limits.waitTimeout = .milliseconds(150)
    let (db, dir) = try await Self.sqlite(limits)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let held = Held(db, transaction: true)
    await held.holding()
    let start = ContinuousClock.now
    do {
      try await db.transaction { uow in try await uow.write("INSERT INTO counters (id, n) VALUES (\(bind: "late"), \(bind: 1))") }
      XCTFail("the writer is held: this one must be refused")
    } catch let error as StorageError {
      guard case .busy(_, let retryAfter) = error else { return XCTFail("expected busy, got \(error)") }
      XCTAssertGreaterThan(retryAfter, .zero)
      XCTAssertEqual(RPCError(error).code, .resourceExhausted)
    }
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(3), "refused at the wait limit")
    XCTAssertEqual(db.gates.first { $0.name == "writer" }?.snapshot.refusedTotal[.timedOut], 1)
    try await held.release()
    // The refused write left nothing behind; the next one goes through.
    try await db.transaction { uow in try await uow.write("INSERT INTO counters (id, n) VALUES (\(bind: "next"), \(bind: 2))") }
    try await db.shutdown()
  }

  func testAWriteOnASQLiteReadConnectionFailsInsteadOfContending() async throws {
    let (db, dir) = try await Self.sqlite()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let start = ContinuousClock.now
    do {
      try await db.read { uow in try await uow.sql.raw("INSERT INTO counters (id, n) VALUES (\(bind: "r"), \(bind: 1))").run() }
      XCTFail("reads are read-only")
    } catch {
      XCTAssertFalse(error is StorageError, "a programming error, not contention: \(error)")
    }
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(2))
    try await db.shutdown()
  }

  func testATransactionInsideATransactionFailsAtOnce() async throws {
    let (db, dir) = try await Self.sqlite()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let start = ContinuousClock.now
    do {
      try await db.transaction { _ in try await db.transaction { _ in } }
      XCTFail("nested transactions are refused")
    } catch {
      XCTAssertTrue(error is NestedTransactionError, "\(error)")
    }
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(2), "not a wait for its own writer")
    try await db.transaction { uow in try await uow.write("INSERT INTO counters (id, n) VALUES (\(bind: "after"), \(bind: 1))") }
    try await db.shutdown()
  }

  func testAPostgresPoolWaitThatRunsOutIsBusy() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1") }
      return
    }
    var limits = Database.Limits()
    limits.waitTimeout = .milliseconds(150)
    let db = try Database(.postgres(url: url, poolSize: 1), limits: limits, logger: TestDatabases.logger)
    let held = Held(db, transaction: false)
    await held.holding()
    do {
      try await db.ping()
      XCTFail("the only connection is held: the ping must be refused")
    } catch StorageError.busy(_, let retryAfter) {
      XCTAssertGreaterThan(retryAfter, .zero)
    }
    try await held.release()
    try await db.ping()
    try await db.shutdown()
  }

  /// Nothing listens on port 1: that is an outage, and breakers should count it.
  func testAnUnreachableDatabaseStaysUnavailable() async throws {
    let db = try Database(.postgres(url: "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable", poolSize: 1), logger: TestDatabases.logger)
    do {
      try await db.ping()
      XCTFail("nothing listens there")
    } catch let error as StorageError {
      guard case .unavailable = error else { return XCTFail("expected unavailable, got \(error)") }
      XCTAssertEqual(RPCError(error).code, .unavailable)
    }
    try await db.shutdown()
  }
}
