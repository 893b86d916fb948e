import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

final class MigratorTests: XCTestCase {
  static let migrations = [
    Migration(version: 1, name: "notes") { dialect in
      [
        "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at_ms BIGINT NOT NULL)",
        "CREATE INDEX notes_created ON notes (created_at_ms)",
      ]
    },
    Migration(version: 2, name: "tags") { _ in ["ALTER TABLE notes ADD COLUMN tag TEXT"] },
  ]

  func testFreshDatabaseMigratesAndRerunIsANoOp() async throws {
    try await TestDatabases.each { db in
      let migrator = try Migrator(service: "notes", migrations: Self.migrations)
      let _v1 = try await migrator.plan(db).pending
      XCTAssertEqual(_v1, [1, 2])
      let _v2 = try await migrator.migrate(db)
      XCTAssertEqual(_v2, [1, 2])
      let _v3 = try await migrator.migrate(db)
      XCTAssertEqual(_v3, [], "re-run applies nothing")
      let plan = try await migrator.plan(db)
      XCTAssertEqual(plan.applied, [1, 2])
      try await db.transaction { uow in
        try await uow.write("INSERT INTO notes (id, body, created_at_ms, tag) VALUES (\(bind: "n1"), \(bind: "hello"), \(bind: 1), \(bind: "t"))")
      }
      // Another service's migrations are tracked separately in the same table.
      let other = try Migrator(service: "other", migrations: [Migration(version: 1, name: "x") { _ in ["CREATE TABLE other_x (id TEXT)"] }])
      let _v4 = try await other.migrate(db)
      XCTAssertEqual(_v4, [1])
    }
  }

  func testChangedMigrationRefusesToStart() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "notes", migrations: Self.migrations).migrate(db)
      var tampered = Self.migrations
      tampered[0] = Migration(version: 1, name: "notes") { _ in ["CREATE TABLE notes (id TEXT PRIMARY KEY)"] }
      do {
        _ = try await Migrator(service: "notes", migrations: tampered).plan(db)
        XCTFail("a changed migration must be refused")
      } catch let error as MigrationError {
        XCTAssertEqual(error, .checksumChanged(service: "notes", version: 1, name: "notes"))
      }
    }
  }

  func testDatabaseNewerThanCodeRefusesToStart() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "notes", migrations: Self.migrations).migrate(db)
      do {
        _ = try await Migrator(service: "notes", migrations: Array(Self.migrations.prefix(1))).migrate(db)
        XCTFail("an older build must refuse a newer database")
      } catch let error as MigrationError {
        XCTAssertEqual(error, .databaseNewerThanCode(service: "notes", databaseVersion: 2, codeVersion: 1))
      }
    }
  }

  func testFailingMigrationLeavesNothingBehind() async throws {
    try await TestDatabases.each { db in
      let broken = [
        Migration(version: 1, name: "half") { _ in ["CREATE TABLE half (id TEXT)", "THIS IS NOT SQL"] }
      ]
      do {
        try await Migrator(service: "half", migrations: broken).migrate(db)
        XCTFail("bad SQL must fail")
      } catch {}
      let _v5 = try await Migrator(service: "half", migrations: broken).plan(db).pending
      XCTAssertEqual(_v5, [1])
      // The first statement was rolled back with the second.
      let fixed = [Migration(version: 1, name: "half") { _ in ["CREATE TABLE half (id TEXT)"] }]
      let _v6 = try await Migrator(service: "half", migrations: fixed).migrate(db)
      XCTAssertEqual(_v6, [1])
    }
  }

  func testVersionsMustBeConsecutive() {
    XCTAssertThrowsError(try Migrator(service: "x", migrations: [Migration(version: 2, name: "a") { _ in [] }]))
    XCTAssertThrowsError(try Migrator(service: "x", migrations: []))
  }
}

final class UnitOfWorkTests: XCTestCase {
  func testTransactionCommitsOrRollsBackTogether() async throws {
    try await TestDatabases.each { db in
      try await db.transaction { uow in
        try await uow.write("CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
      }
      try await db.transaction { uow in
        try await uow.write("INSERT INTO items (id, n) VALUES (\(bind: "a"), \(bind: 1))")
        try await uow.write("INSERT INTO items (id, n) VALUES (\(bind: "b"), \(bind: 2))")
      }
      struct Boom: Error {}
      do {
        try await db.transaction { uow in
          try await uow.write("INSERT INTO items (id, n) VALUES (\(bind: "c"), \(bind: 3))")
          throw Boom()
        }
        XCTFail("expected the error")
      } catch is Boom {}
      // A duplicate key is reported as such and rolls back the whole unit.
      do {
        try await db.transaction { uow in
          try await uow.write("INSERT INTO items (id, n) VALUES (\(bind: "d"), \(bind: 4))")
          try await uow.write("INSERT INTO items (id, n) VALUES (\(bind: "a"), \(bind: 5))")
        }
        XCTFail("expected a unique violation")
      } catch StorageError.uniqueViolation {}
      let ids = try await db.read { uow in
        try await uow.sql.raw("SELECT id FROM items ORDER BY id").all().map { try $0.decode(column: "id", as: String.self) }
      }
      XCTAssertEqual(ids, ["a", "b"])
      try await db.ping()
    }
  }

  func testLocationNeverPrintsAPassword() {
    let location = DatabaseLocation.postgres(url: "postgres://app:hunter2@db:5432/quiz", poolSize: 5)
    XCTAssertFalse("\(location)".contains("hunter2"))
    XCTAssertTrue("\(location)".contains("db:5432"))
  }
}
