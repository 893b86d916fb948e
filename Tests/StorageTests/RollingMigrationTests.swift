import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

/// Rolling deploys: new replicas migrate while old ones still run. Old code accepts a database
/// ahead of it only by expand-only steps and refuses one ahead by a contract step.
final class RollingMigrationTests: XCTestCase {
  static let v1 = Migration(version: 1, name: "notes") { _ in
    ["CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at_ms BIGINT NOT NULL)"]
  }
  static let v2 = Migration(version: 2, name: "notes.tag") { _ in ["ALTER TABLE notes ADD COLUMN tag TEXT"] }
  /// Expand-only: a column with a default, a new table, an index built without blocking writes.
  static let v3 = Migration(
    version: 3, name: "notes.pinned", expandOnly: true,
    concurrentIndexes: [.init(name: "notes_pinned", table: "notes", columns: ["pinned", "created_at_ms"])]
  ) { _ in
    [
      "ALTER TABLE notes ADD COLUMN pinned BIGINT NOT NULL DEFAULT 0",
      "CREATE TABLE note_links (from_id TEXT NOT NULL, to_id TEXT NOT NULL, PRIMARY KEY (from_id, to_id))",
    ]
  }
  /// Contract: code that still writes `body` breaks.
  static let v4 = Migration(version: 4, name: "drop notes.body") { _ in ["ALTER TABLE notes DROP COLUMN body"] }

  func testOldCodeAcceptsADatabaseAheadByExpandOnlySteps() async throws {
    try await TestDatabases.each { db in
      let new = try Migrator(service: "notes", migrations: [Self.v1, Self.v2, Self.v3])
      let old = try Migrator(service: "notes", migrations: [Self.v1, Self.v2])
      let applied = try await new.migrate(db)
      XCTAssertEqual(applied, [1, 2, 3])

      let plan = try await old.plan(db)
      XCTAssertEqual(plan.applied, [1, 2])
      XCTAssertEqual(plan.pending, [])
      XCTAssertEqual(plan.aheadExpandOnly, [3])
      let oldApplied = try await old.migrate(db)
      XCTAssertEqual(oldApplied, [], "old code starts and applies nothing")
      // Old code keeps writing without knowing the new column.
      try await db.transaction { uow in
        try await uow.write("INSERT INTO notes (id, body, created_at_ms, tag) VALUES (\(bind: "n1"), \(bind: "hi"), \(bind: 1), \(bind: "t"))")
      }

      let newPlan = try await new.plan(db)
      XCTAssertEqual(newPlan.applied, [1, 2, 3])
      XCTAssertEqual(newPlan.aheadExpandOnly, [])
      XCTAssertEqual(newPlan.pendingIndexes, [])
      let kinds = try await Self.kinds(db, service: "notes")
      XCTAssertEqual(kinds, ["contract", "contract", "expand"])
      let built = try await Self.indexIsBuilt(db, "notes_pinned")
      XCTAssertTrue(built)
      let rerun = try await new.migrate(db)
      XCTAssertEqual(rerun, [])
    }
  }

  func testOldCodeRefusesADatabaseAheadByAContractStepAndNamesIt() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: "notes", migrations: [Self.v1, Self.v2, Self.v3, Self.v4]).migrate(db)
      do {
        _ = try await Migrator(service: "notes", migrations: [Self.v1, Self.v2]).plan(db)
        XCTFail("a database ahead by a contract step must be refused")
      } catch let error as MigrationError {
        XCTAssertEqual(error, .databaseNewerThanCode(service: "notes", databaseVersion: 4, codeVersion: 2))
        guard case .databaseNewerThanCode(_, _, _, let name) = error else { return XCTFail("\(error)") }
        XCTAssertEqual(name, "drop notes.body")
        XCTAssertTrue(error.description.contains("migration 4 (drop notes.body)"), error.description)
        XCTAssertTrue(error.description.contains("contract"), error.description)
      }
      // The build just before the contract step is refused too (by `migrate` as well as `plan`).
      do {
        try await Migrator(service: "notes", migrations: [Self.v1, Self.v2, Self.v3]).migrate(db)
        XCTFail("a database ahead by a contract step must be refused")
      } catch let error as MigrationError {
        XCTAssertEqual(error, .databaseNewerThanCode(service: "notes", databaseVersion: 4, codeVersion: 3))
      }
    }
  }

  func testUpgradesTheTableOfTheEarlierMigrator() async throws {
    try await TestDatabases.each { db in
      // A database made by the previous build: schema_migrations without `kind`, v1 applied.
      try await db.transaction { uow in
        try await uow.write(
          """
          CREATE TABLE schema_migrations (
            service TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL, PRIMARY KEY (service, version))
          """)
        try await uow.write("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at_ms BIGINT NOT NULL)")
        try await uow.write(
          """
          INSERT INTO schema_migrations (service, version, name, checksum, applied_at_ms)
          VALUES (\(bind: "notes"), \(bind: 1), \(bind: "notes"), \(bind: Self.v1.checksum(for: uow.dialect)), \(bind: 1))
          """)
      }
      let new = try Migrator(service: "notes", migrations: [Self.v1, Self.v2, Self.v3])
      let applied = try await new.migrate(db)
      XCTAssertEqual(applied, [2, 3])
      let kinds = try await Self.kinds(db, service: "notes")
      XCTAssertEqual(kinds, ["contract", "contract", "expand"], "rows from before the column are contract steps")
      let plan = try await Migrator(service: "notes", migrations: [Self.v1, Self.v2]).plan(db)
      XCTAssertEqual(plan.aheadExpandOnly, [3])
      let again = try await new.migrate(db)
      XCTAssertEqual(again, [])
    }
  }

  /// On PostgreSQL the index is built with CREATE INDEX CONCURRENTLY outside the migration's
  /// transaction (inside one it would fail); a failed build leaves an invalid index, which the
  /// next run drops and builds again. On SQLite the index is part of the migration's transaction.
  func testConcurrentIndexIsBuiltOutsideTheTransactionAndRebuiltWhenLeftInvalid() async throws {
    try await TestDatabases.each { db in
      let v1 = Migration(version: 1, name: "accounts") { _ in ["CREATE TABLE accounts (id TEXT PRIMARY KEY, email TEXT NOT NULL)"] }
      let v2 = Migration(
        version: 2, name: "accounts.email unique", expandOnly: true,
        concurrentIndexes: [.init(name: "accounts_email", table: "accounts", columns: ["email"], unique: true)]
      ) { _ in ["ALTER TABLE accounts ADD COLUMN verified BIGINT NOT NULL DEFAULT 0"] }
      try await Migrator(service: "accounts", migrations: [v1]).migrate(db)
      try await db.transaction { uow in
        try await uow.write("INSERT INTO accounts (id, email) VALUES (\(bind: "a1"), \(bind: "x@example.com"))")
        try await uow.write("INSERT INTO accounts (id, email) VALUES (\(bind: "a2"), \(bind: "x@example.com"))")
      }
      let migrator = try Migrator(service: "accounts", migrations: [v1, v2])
      do {
        try await migrator.migrate(db)
        XCTFail("a duplicate must make the unique index fail")
      } catch {}
      let failed = try await migrator.plan(db)
      if db.dialect == .postgres {
        // The step's statements committed and were recorded; the index build failed after.
        XCTAssertEqual(failed.applied, [1, 2])
        XCTAssertEqual(failed.pendingIndexes, ["accounts_email"])
        let valid = try await Self.postgresIndexValid(db, "accounts_email")
        XCTAssertEqual(valid, false, "a failed concurrent build leaves an invalid index")
      } else {
        XCTAssertEqual(failed.applied, [1])
        XCTAssertEqual(failed.pending, [2], "rolled back with the migration's transaction")
      }

      try await db.transaction { uow in try await uow.write("DELETE FROM accounts WHERE id = \(bind: "a2")") }
      let applied = try await migrator.migrate(db)
      XCTAssertEqual(applied, db.dialect == .postgres ? [] : [2])
      let plan = try await migrator.plan(db)
      XCTAssertEqual(plan.applied, [1, 2])
      XCTAssertEqual(plan.pendingIndexes, [])
      let built = try await Self.indexIsBuilt(db, "accounts_email")
      XCTAssertTrue(built)
      do {
        try await db.transaction { uow in
          try await uow.write("INSERT INTO accounts (id, email) VALUES (\(bind: "a3"), \(bind: "x@example.com"))")
        }
        XCTFail("the unique index must hold")
      } catch StorageError.uniqueViolation {}
      let rerun = try await migrator.migrate(db)
      XCTAssertEqual(rerun, [], "idempotent: a valid index is left alone")
    }
  }

  func testExpandOnlyStepsAndListsAreChecked() throws {
    let contract = [
      "ALTER TABLE t DROP COLUMN c", "DROP TABLE t", "ALTER TABLE t RENAME COLUMN a TO b",
      "ALTER TABLE t ALTER COLUMN c SET NOT NULL", "ALTER TABLE t ALTER COLUMN c TYPE BIGINT", "TRUNCATE t",
    ]
    for statement in contract {
      XCTAssertThrowsError(
        try Migrator(service: "x", migrations: [Migration(version: 1, name: "a", expandOnly: true) { _ in [statement] }]),
        statement)
      // The same statement is fine in a contract step.
      XCTAssertNoThrow(try Migrator(service: "x", migrations: [Migration(version: 1, name: "a") { _ in [statement] }]))
    }
    let additive = [
      "CREATE TABLE t (id TEXT PRIMARY KEY, dropped_at_ms BIGINT)", "ALTER TABLE t ADD COLUMN c TEXT NOT NULL DEFAULT ''",
      "ALTER TABLE t ALTER COLUMN c DROP NOT NULL", "CREATE INDEX IF NOT EXISTS t_c ON t (c)",
    ]
    for statement in additive {
      XCTAssertNoThrow(
        try Migrator(service: "x", migrations: [Migration(version: 1, name: "a", expandOnly: true) { _ in [statement] }]),
        statement)
    }
    let index = Migration.ConcurrentIndex(name: "t_c", table: "t", columns: ["c"])
    XCTAssertThrowsError(
      try Migrator(
        service: "x",
        migrations: [
          Migration(version: 1, name: "a", expandOnly: true, concurrentIndexes: [index]) { _ in [] },
          Migration(version: 2, name: "b", expandOnly: true, concurrentIndexes: [index]) { _ in [] },
        ]), "an index name twice")
    XCTAssertThrowsError(
      try Migrator(
        service: "x",
        migrations: [
          Migration(version: 1, name: "a", concurrentIndexes: [.init(name: "t_c", table: "t", columns: [])]) { _ in [] }
        ]), "an index without columns")
  }

  func testChecksumsOfPlainMigrationsAreUnchanged() {
    // Recorded by earlier builds in deployed databases: SHA-256 of the statements joined by ";\n".
    let plain = Migration(version: 1, name: "x") { _ in ["CREATE TABLE x (id TEXT)", "CREATE INDEX x_id ON x (id)"] }
    XCTAssertEqual(plain.checksum(for: .sqlite), "c3e46d70549530ceb202051bc782bc0a4c7beab4aef3164ea9d07e5e974572b4")
    let expand = Migration(version: 1, name: "x", expandOnly: true) { _ in ["CREATE TABLE x (id TEXT)", "CREATE INDEX x_id ON x (id)"] }
    XCTAssertNotEqual(expand.checksum(for: .sqlite), plain.checksum(for: .sqlite), "the flag is covered")
    let indexed = Migration(
      version: 1, name: "x", expandOnly: true, concurrentIndexes: [.init(name: "x_id2", table: "x", columns: ["id"])]
    ) { _ in ["CREATE TABLE x (id TEXT)", "CREATE INDEX x_id ON x (id)"] }
    XCTAssertNotEqual(indexed.checksum(for: .sqlite), expand.checksum(for: .sqlite), "concurrent indexes are covered")
  }

  // MARK: helpers

  static func kinds(_ db: Database, service: String) async throws -> [String] {
    try await db.read { uow in
      try await uow.sql.raw("SELECT kind FROM schema_migrations WHERE service = \(bind: service) ORDER BY version")
        .all().map { try $0.decode(column: "kind", as: String.self) }
    }
  }

  /// nil: no such index.
  static func postgresIndexValid(_ db: Database, _ name: String) async throws -> Bool? {
    try await db.read { uow in
      try await uow.sql.raw(
        """
        SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = \(bind: name)
        """
      ).first()?.decode(column: "valid", as: Bool.self)
    }
  }

  static func indexIsBuilt(_ db: Database, _ name: String) async throws -> Bool {
    if db.dialect == .postgres {
      return try await postgresIndexValid(db, name) == true
    }
    let count = try await db.read { uow in
      try await uow.sql.raw("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND name = \(bind: name)")
        .first()?.decode(column: "n", as: Int.self) ?? 0
    }
    return count == 1
  }
}
