import Foundation
import SQLKit
import Storage
import Synchronization
import TestSupport
import XCTest

/// Backfills: after the schema step, in batches, each its own transaction, resumable.
final class DataMigrationTests: XCTestCase {
  struct Boom: Error {}

  static let v1 = Migration(version: 1, name: "items") { _ in ["CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL)"] }
  static let v2 = Migration(version: 2, name: "items.touched", expandOnly: true) { _ in
    ["ALTER TABLE items ADD COLUMN touched BIGINT NOT NULL DEFAULT 0"]
  }
  static let backfillName = "items.touched backfill"

  /// What each batch saw, and a failure to inject once.
  final class Recorder: Sendable {
    struct Call: Sendable, Equatable {
      var cursor: String?
      /// Schema version 2 as seen from another connection: 1 once its transaction committed.
      var schemaCommitted: Int
      /// Rows already backfilled as seen from another connection.
      var rowsCommitted: Int
    }
    struct State {
      var calls: [Call] = []
      var failOnceAt: String?
      var failures = 0
    }
    let state: Mutex<State>

    init(failOnceAt: String?) { self.state = Mutex(State(failOnceAt: failOnceAt)) }

    func record(_ call: Call) throws {
      try self.state.withLock { state in
        state.calls.append(call)
        if let at = state.failOnceAt, call.cursor == at {
          state.failOnceAt = nil
          state.failures += 1
          throw Boom()
        }
      }
    }

    var calls: [Call] { self.state.withLock { $0.calls } }
    var failures: Int { self.state.withLock { $0.failures } }
  }

  /// Marks 100 rows after the cursor per batch; checks from another connection what is committed.
  static func backfill(_ db: Database, _ recorder: Recorder) -> DataMigration {
    DataMigration(version: 2, name: backfillName) { uow, cursor in
      let schema = try await db.read { other in
        try await other.sql.raw("SELECT COUNT(*) AS n FROM schema_migrations WHERE service = \(bind: "items") AND version = \(bind: 2)")
          .first()?.decode(column: "n", as: Int.self) ?? 0
      }
      let rows = try await db.read { other in
        try await other.sql.raw("SELECT COUNT(*) AS n FROM items WHERE touched = \(bind: 1)")
          .first()?.decode(column: "n", as: Int.self) ?? 0
      }
      let ids = try await uow.sql.raw("SELECT id FROM items WHERE id > \(bind: cursor ?? "") ORDER BY id LIMIT 100")
        .all().map { try $0.decode(column: "id", as: String.self) }
      for id in ids {
        try await uow.write("UPDATE items SET touched = touched + \(bind: 1) WHERE id = \(bind: id)")
      }
      // After the batch's writes: a failure here must roll them back with the cursor.
      try recorder.record(.init(cursor: cursor, schemaCommitted: schema, rowsCommitted: rows))
      return ids.count < 100 ? nil : ids.last
    }
  }

  static func insertItems(_ db: Database, count: Int) async throws {
    try await db.transaction { uow in
      for i in 0..<count {
        let digits = String(i)
        let id = "item-" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
        try await uow.write("INSERT INTO items (id, n) VALUES (\(bind: id), \(bind: i))")
      }
    }
  }

  static func touchedCounts(_ db: Database) async throws -> [Int: Int] {
    try await db.read { uow in
      var counts: [Int: Int] = [:]
      for row in try await uow.sql.raw("SELECT touched, COUNT(*) AS n FROM items GROUP BY touched").all() {
        let touched = try row.decode(column: "touched", as: Int.self)
        counts[touched] = try row.decode(column: "n", as: Int.self)
      }
      return counts
    }
  }

  struct Progress: Sendable, Equatable {
    var cursor: String?
    var batches: Int
    var done: Bool
  }

  static func progress(_ db: Database, service: String, name: String) async throws -> Progress? {
    try await db.read { uow -> Progress? in
      guard
        let row = try await uow.sql.raw(
          """
          SELECT cursor, batches, done_at_ms FROM data_migrations WHERE service = \(bind: service) AND name = \(bind: name)
          """
        ).first()
      else { return nil }
      let cursor: String? = try row.decodeNil(column: "cursor") ? nil : row.decode(column: "cursor", as: String.self)
      return Progress(
        cursor: cursor, batches: try row.decode(column: "batches", as: Int.self), done: try !row.decodeNil(column: "done_at_ms"))
    }
  }

  /// Rows before the cursor (ids are item-000, item-001, …).
  static func position(_ cursor: String?) -> Int {
    guard let cursor else { return 0 }
    return Int(cursor.dropFirst("item-".count))! + 1
  }

  func testBackfillRunsInBatchesAfterTheSchemaStepAndResumesAfterAFailure() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "items", migrations: [Self.v1]).migrate(db)
      try await Self.insertItems(db, count: 250)

      let recorder = Recorder(failOnceAt: "item-099")
      let migrator = try Migrator(
        service: "items", migrations: [Self.v1, Self.v2], dataMigrations: [Self.backfill(db, recorder)])
      let before = try await migrator.plan(db)
      XCTAssertEqual(before.pending, [2])
      XCTAssertEqual(before.pendingData, [Self.backfillName])

      do {
        try await migrator.migrate(db)
        XCTFail("batch 2 was told to fail")
      } catch is Boom {}
      // The schema step committed; batch 1 committed with its cursor; batch 2 rolled back.
      let failed = try await migrator.plan(db)
      XCTAssertEqual(failed.applied, [1, 2])
      XCTAssertEqual(failed.pendingData, [Self.backfillName])
      let stopped = try await Self.progress(db, service: "items", name: Self.backfillName)
      XCTAssertEqual(stopped, Progress(cursor: "item-099", batches: 1, done: false))
      let half = try await Self.touchedCounts(db)
      XCTAssertEqual(half, [0: 150, 1: 100])

      // Rerun: continues from the stored cursor.
      let applied = try await migrator.migrate(db)
      XCTAssertEqual(applied, [])
      XCTAssertEqual(recorder.calls.map(\.cursor), [nil, "item-099", "item-099", "item-199"])
      XCTAssertEqual(recorder.failures, 1)
      let finished = try await Self.progress(db, service: "items", name: Self.backfillName)
      XCTAssertEqual(finished, Progress(cursor: "item-199", batches: 3, done: true), "250 rows in batches of 100: 3 batches")
      let all = try await Self.touchedCounts(db)
      XCTAssertEqual(all, [1: 250], "every row exactly once")
      let after = try await migrator.plan(db)
      XCTAssertEqual(after.pendingData, [])

      for call in recorder.calls {
        // Not inside the schema transaction: its version row was already committed …
        XCTAssertEqual(call.schemaCommitted, 1, "batch at \(call.cursor ?? "start")")
        // … and every earlier batch committed on its own.
        XCTAssertEqual(call.rowsCommitted, Self.position(call.cursor), "batch at \(call.cursor ?? "start")")
      }

      // Done: later runs don't call the batch again.
      try await migrator.migrate(db)
      XCTAssertEqual(recorder.calls.count, 4)
    }
  }

  func testReplicasRunningTheSameBackfillTakeTurns() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "items", migrations: [Self.v1]).migrate(db)
      try await Self.insertItems(db, count: 250)
      let backfill = DataMigration(version: 2, name: Self.backfillName) { uow, cursor in
        let ids = try await uow.sql.raw("SELECT id FROM items WHERE id > \(bind: cursor ?? "") ORDER BY id LIMIT 100")
          .all().map { try $0.decode(column: "id", as: String.self) }
        for id in ids {
          try await uow.write("UPDATE items SET touched = touched + \(bind: 1) WHERE id = \(bind: id)")
        }
        return ids.count < 100 ? nil : ids.last
      }
      let one = try Migrator(service: "items", migrations: [Self.v1, Self.v2], dataMigrations: [backfill])
      let two = try Migrator(service: "items", migrations: [Self.v1, Self.v2], dataMigrations: [backfill])
      async let first = one.migrate(db)
      async let second = two.migrate(db)
      let (a, b) = try await (first, second)
      XCTAssertEqual((a + b).sorted(), [2], "one replica applies the schema step")
      let all = try await Self.touchedCounts(db)
      XCTAssertEqual(all, [1: 250], "every row exactly once")
      let finished = try await Self.progress(db, service: "items", name: Self.backfillName)
      XCTAssertEqual(finished?.batches, 3)
      XCTAssertEqual(finished?.done, true)
    }
  }

  func testABatchThatDoesNotAdvanceIsStopped() async throws {
    try await TestDatabases.each { db in
      let stuck = DataMigration(version: 1, name: "stuck") { _, _ in "same" }
      let migrator = try Migrator(
        service: "stall", migrations: [Migration(version: 1, name: "x") { _ in ["CREATE TABLE stall_x (id TEXT)"] }],
        dataMigrations: [stuck])
      do {
        try await migrator.migrate(db)
        XCTFail("a batch returning its own cursor would loop forever")
      } catch let error as MigrationError {
        XCTAssertEqual(error, .dataMigrationMadeNoProgress(service: "stall", name: "stuck", cursor: "same"))
      }
      let progress = try await Self.progress(db, service: "stall", name: "stuck")
      XCTAssertEqual(progress, Progress(cursor: "same", batches: 1, done: false))
    }
  }

  func testDataMigrationListIsChecked() {
    let schema = [Migration(version: 1, name: "x") { _ in ["CREATE TABLE x (id TEXT)"] }]
    let batch: @Sendable (UnitOfWork, String?) async throws -> String? = { _, _ in nil }
    XCTAssertThrowsError(
      try Migrator(
        service: "x", migrations: schema,
        dataMigrations: [
          DataMigration(version: 1, name: "a", batch: batch), DataMigration(version: 1, name: "a", batch: batch),
        ]), "a name twice")
    XCTAssertThrowsError(
      try Migrator(
        service: "x", migrations: schema,
        dataMigrations: [
          DataMigration(version: 2, name: "a", batch: batch)
        ]), "after a migration that is not in the list")
    XCTAssertNoThrow(try Migrator(service: "x", migrations: schema, dataMigrations: [DataMigration(version: 1, name: "a", batch: batch)]))
  }
}
