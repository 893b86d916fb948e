import Crypto
import Foundation
import SQLKit

/// One forward-only schema change. `statements` may differ per dialect (types, mostly); the
/// checksum covers the statements of the dialect being migrated.
///
/// A migration is a *contract* step unless marked `expandOnly`. An expand-only step only adds
/// (new tables, nullable columns, columns with defaults, indexes), so code that does not know it
/// still works against the database: an older build accepts a database that is ahead of it only
/// by expand-only steps (a rolling deploy), and refuses one that is ahead by a contract step.
public struct Migration: Sendable {
  public let version: Int
  public let name: String
  /// Additive only; recorded as `kind = 'expand'` in `schema_migrations` so older builds can
  /// tell. `Migrator.init` refuses an expand-only step whose statements drop, rename, truncate,
  /// retype or set NOT NULL.
  public let expandOnly: Bool
  /// Indexes built after the migration's transaction commits: on PostgreSQL with
  /// `CREATE INDEX CONCURRENTLY` (which cannot run in a transaction and does not block writes),
  /// on SQLite inside the migration's transaction. Their tables must exist once `statements` ran.
  public let concurrentIndexes: [ConcurrentIndex]
  public let statements: @Sendable (SQLDialectKind) -> [String]

  /// An index built without blocking writes. Names are identifiers as stored (lowercase).
  public struct ConcurrentIndex: Sendable, Hashable {
    public let name: String
    public let table: String
    public let columns: [String]
    public let unique: Bool

    public init(name: String, table: String, columns: [String], unique: Bool = false) {
      self.name = name
      self.table = table
      self.columns = columns
      self.unique = unique
    }

    /// Idempotent (`IF NOT EXISTS`); identifiers quoted by the dialect.
    func createStatement(concurrently: Bool) -> SQLQueryString {
      switch (self.unique, concurrently) {
      case (false, false):
        return "CREATE INDEX IF NOT EXISTS \(ident: self.name) ON \(ident: self.table) (\(idents: self.columns, joinedBy: ", "))"
      case (true, false):
        return "CREATE UNIQUE INDEX IF NOT EXISTS \(ident: self.name) ON \(ident: self.table) (\(idents: self.columns, joinedBy: ", "))"
      case (false, true):
        return "CREATE INDEX CONCURRENTLY IF NOT EXISTS \(ident: self.name) ON \(ident: self.table) (\(idents: self.columns, joinedBy: ", "))"
      case (true, true):
        return "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \(ident: self.name) ON \(ident: self.table) (\(idents: self.columns, joinedBy: ", "))"
      }
    }

    var summary: String {
      let prefix = self.unique ? "unique " : ""
      let columns = self.columns.joined(separator: ", ")
      return "\(prefix)\(self.name) on \(self.table) (\(columns))"
    }
  }

  public init(
    version: Int, name: String, expandOnly: Bool = false, concurrentIndexes: [ConcurrentIndex] = [],
    statements: @escaping @Sendable (SQLDialectKind) -> [String]
  ) {
    self.version = version
    self.name = name
    self.expandOnly = expandOnly
    self.concurrentIndexes = concurrentIndexes
    self.statements = statements
  }

  /// SHA-256 of the statements; the expand-only flag and concurrent indexes are covered too
  /// (only when present, so checksums of plain migrations recorded earlier stay the same).
  public func checksum(for dialect: SQLDialectKind) -> String {
    var text = self.statements(dialect).joined(separator: ";\n")
    if self.expandOnly { text += "\n-- expand-only" }
    for index in self.concurrentIndexes { text += "\n-- concurrent index " + index.summary }
    return SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
  }

  var kind: String { self.expandOnly ? "expand" : "contract" }

  /// The obvious contract statements, which an expand-only step must not contain: drops (but
  /// `DROP NOT NULL`, which relaxes), renames, truncation, type changes, `SET NOT NULL`.
  static func looksLikeContract(_ statement: String) -> Bool {
    let words = statement.uppercased().split { !($0.isLetter || $0.isNumber || $0 == "_") }.map(String.init)
    for (i, word) in words.enumerated() {
      let next = i + 1 < words.count ? words[i + 1] : ""
      let afterNext = i + 2 < words.count ? words[i + 2] : ""
      switch word {
      case "RENAME", "TRUNCATE": return true
      case "DROP" where !(next == "NOT" && afterNext == "NULL"): return true
      case "SET" where (next == "NOT" && afterNext == "NULL") || (next == "DATA" && afterNext == "TYPE"): return true
      case "ALTER" where next == "COLUMN" && i + 3 < words.count && words[i + 3] == "TYPE": return true
      default: continue
      }
    }
    return false
  }
}

public enum MigrationError: Error, Sendable, Hashable, CustomStringConvertible {
  case checksumChanged(service: String, version: Int, name: String)
  /// The database has a contract step (not expand-only) that this build does not know.
  /// `name` is that step's recorded name, for the message; equality compares service and
  /// versions only (the version identifies the step).
  case databaseNewerThanCode(service: String, databaseVersion: Int, codeVersion: Int, name: String = "")
  case badMigrationList(String)
  /// A data migration's batch returned the cursor it was given: it would never finish.
  case dataMigrationMadeNoProgress(service: String, name: String, cursor: String)

  public var description: String {
    switch self {
    case .checksumChanged(let s, let v, let n):
      return "\(s): migration \(v) (\(n)) was changed after it was applied; migrations are forward-only — add a new one instead"
    case .databaseNewerThanCode(let s, let db, let code, let name):
      let step = name.isEmpty ? "" : " (\(name))"
      return
        "\(s): the database has migration \(db)\(step), a contract step (not expand-only) that this build, which only knows up to \(code), cannot run beside; run a newer build"
    case .badMigrationList(let why):
      return "invalid migration list: \(why)"
    case .dataMigrationMadeNoProgress(let s, let n, let cursor):
      return "\(s): data migration \(n) returned the cursor it was given (\(cursor)); a batch must advance or return nil when done"
    }
  }

  public static func == (lhs: MigrationError, rhs: MigrationError) -> Bool {
    switch (lhs, rhs) {
    case let (.checksumChanged(s1, v1, n1), .checksumChanged(s2, v2, n2)):
      return s1 == s2 && v1 == v2 && n1 == n2
    case let (.databaseNewerThanCode(s1, d1, c1, _), .databaseNewerThanCode(s2, d2, c2, _)):
      return s1 == s2 && d1 == d2 && c1 == c2
    case let (.badMigrationList(w1), .badMigrationList(w2)):
      return w1 == w2
    case let (.dataMigrationMadeNoProgress(s1, n1, k1), .dataMigrationMadeNoProgress(s2, n2, k2)):
      return s1 == s2 && n1 == n2 && k1 == k2
    default:
      return false
    }
  }

  public func hash(into hasher: inout Hasher) {
    switch self {
    case .checksumChanged(let s, let v, let n):
      hasher.combine(0); hasher.combine(s); hasher.combine(v); hasher.combine(n)
    case .databaseNewerThanCode(let s, let db, let code, _):
      hasher.combine(1); hasher.combine(s); hasher.combine(db); hasher.combine(code)
    case .badMigrationList(let why):
      hasher.combine(2); hasher.combine(why)
    case .dataMigrationMadeNoProgress(let s, let n, let cursor):
      hasher.combine(3); hasher.combine(s); hasher.combine(n); hasher.combine(cursor)
    }
  }
}

/// Applies a service's numbered migrations in order, each in its own transaction, recording
/// version, name, checksum and kind (`expand` / `contract`) in `schema_migrations`; then builds
/// concurrent indexes (PostgreSQL, outside any transaction) and runs data migrations in batches.
/// Refuses to run when an applied migration changed or the database is ahead of the code by a
/// contract step; a database ahead only by expand-only steps is accepted (rolling deploys).
public struct Migrator: Sendable {
  public let service: String
  public let migrations: [Migration]
  public let dataMigrations: [DataMigration]

  public init(service: String, migrations: [Migration], dataMigrations: [DataMigration] = []) throws {
    let versions = migrations.map(\.version)
    guard !versions.isEmpty, versions == Array(1...versions.count) else {
      throw MigrationError.badMigrationList("versions must be 1, 2, 3, … in order; got \(versions)")
    }
    var indexNames: Set<String> = []
    for migration in migrations {
      for index in migration.concurrentIndexes {
        guard !index.name.isEmpty, !index.table.isEmpty, !index.columns.isEmpty else {
          throw MigrationError.badMigrationList("migration \(migration.version): a concurrent index needs a name, a table and columns")
        }
        guard indexNames.insert(index.name).inserted else {
          throw MigrationError.badMigrationList("concurrent index \(index.name) is declared twice")
        }
      }
      if migration.expandOnly {
        for dialect in [SQLDialectKind.sqlite, .postgres] {
          for statement in migration.statements(dialect) where Migration.looksLikeContract(statement) {
            throw MigrationError.badMigrationList(
              "migration \(migration.version) (\(migration.name)) is expand-only but has a contract statement: \(statement)")
          }
        }
      }
    }
    var dataNames: Set<String> = []
    for data in dataMigrations {
      guard !data.name.isEmpty, dataNames.insert(data.name).inserted else {
        throw MigrationError.badMigrationList("data migration names must be unique and not empty; got \"\(data.name)\" again")
      }
      guard versions.contains(data.version) else {
        throw MigrationError.badMigrationList("data migration \(data.name) follows migration \(data.version), which is not in the list")
      }
    }
    self.service = service
    self.migrations = migrations
    // Stable: by the schema version each follows, then in list order.
    self.dataMigrations = dataMigrations.enumerated()
      .sorted { ($0.element.version, $0.offset) < ($1.element.version, $1.offset) }.map { $0.element }
  }

  public struct Plan: Sendable, Hashable {
    /// Versions already applied.
    public var applied: [Int]
    /// Still to apply, in order.
    public var pending: [Int]
    /// Versions in the database that this build does not know, all expand-only: a newer build
    /// is rolling out; this one keeps working.
    public var aheadExpandOnly: [Int]
    /// Concurrent indexes of applied migrations that are missing or invalid (an interrupted or
    /// running build, PostgreSQL only); `migrate` builds them.
    public var pendingIndexes: [String]
    /// Data migrations not finished yet (never started or interrupted), in run order.
    public var pendingData: [String]
  }

  /// What `migrate` would do; also the integrity check (throws on tampering or a database
  /// ahead by a contract step).
  public func plan(_ db: Database) async throws -> Plan {
    try await self.ensureTables(db)
    return try await db.read { uow in
      let rows = try await uow.sql.raw(
        """
        SELECT version, name, checksum, kind FROM schema_migrations WHERE service = \(bind: self.service) ORDER BY version
        """
      ).all()
      var applied: [Int] = []
      var ahead: [(version: Int, name: String)] = []
      for row in rows {
        let version = try row.decode(column: "version", as: Int.self)
        let name = try row.decode(column: "name", as: String.self)
        let checksum = try row.decode(column: "checksum", as: String.self)
        let kind = try row.decode(column: "kind", as: String.self)
        guard let known = self.migrations.first(where: { $0.version == version }) else {
          guard kind == "expand" else {
            throw MigrationError.databaseNewerThanCode(
              service: self.service, databaseVersion: version, codeVersion: self.migrations.count, name: name)
          }
          ahead.append((version, name))
          continue
        }
        guard known.checksum(for: uow.dialect) == checksum else {
          throw MigrationError.checksumChanged(service: self.service, version: version, name: known.name)
        }
        applied.append(version)
      }
      let pending = self.migrations.map(\.version).filter { !applied.contains($0) }
      if let first = ahead.first, !pending.isEmpty {
        // Newer steps on top of missing older ones: never made by `migrate`; don't add under them.
        throw MigrationError.databaseNewerThanCode(
          service: self.service, databaseVersion: first.version, codeVersion: self.migrations.count, name: first.name)
      }
      var pendingIndexes: [String] = []
      if uow.dialect == .postgres {
        for migration in self.migrations where applied.contains(migration.version) {
          for index in migration.concurrentIndexes {
            let valid = try await Self.postgresIndexIsValid(index.name, uow)
            if valid != true { pendingIndexes.append(index.name) }
          }
        }
      }
      let finished = try await uow.sql.raw(
        """
        SELECT name FROM data_migrations WHERE service = \(bind: self.service) AND done_at_ms IS NOT NULL
        """
      ).all().map { try $0.decode(column: "name", as: String.self) }
      let pendingData = self.dataMigrations.map(\.name).filter { !finished.contains($0) }
      return Plan(
        applied: applied, pending: pending, aheadExpandOnly: ahead.map { $0.version },
        pendingIndexes: pendingIndexes, pendingData: pendingData)
    }
  }

  /// Applies every pending migration, builds its concurrent indexes, then runs unfinished data
  /// migrations batch by batch. Returns the schema versions applied (empty: up to date).
  @discardableResult
  public func migrate(_ db: Database) async throws -> [Int] {
    let plan = try await self.plan(db)
    var done: [Int] = []
    for migration in self.migrations {
      if plan.pending.contains(migration.version), try await self.apply(migration, db) {
        done.append(migration.version)
      }
      // Also finishes an index an interrupted run left behind, before any later step.
      if db.dialect == .postgres, !migration.concurrentIndexes.isEmpty {
        try await self.buildConcurrentIndexes(of: migration, db)
      }
    }
    for data in self.dataMigrations where plan.pendingData.contains(data.name) {
      try await self.runDataMigration(data, db)
    }
    return done
  }

  /// One migration in one transaction; false when another process applied it meanwhile.
  private func apply(_ migration: Migration, _ db: Database) async throws -> Bool {
    try await db.transaction { uow -> Bool in
      if uow.dialect == .postgres {
        // Replicas starting together: one migrates, the others wait and then see it done.
        try await uow.sql.raw("SELECT pg_advisory_xact_lock(\(bind: Int64(Self.lockKey(self.service))))").run()
      }
      // (SQLite's BEGIN IMMEDIATE already serializes writers.) Another process may have
      // applied it since the plan was made.
      let already = try await uow.sql.raw(
        """
        SELECT version FROM schema_migrations WHERE service = \(bind: self.service) AND version = \(bind: migration.version)
        """
      ).all()
      if !already.isEmpty { return false }
      for statement in migration.statements(uow.dialect) {
        // Statements are constants in the code, never built from input.
        try await uow.sql.raw(SQLQueryString(unsafeRaw: statement)).run()
      }
      if uow.dialect == .sqlite {
        // No concurrent builds in SQLite (one writer at a time anyway): part of the transaction.
        for index in migration.concurrentIndexes {
          try await uow.sql.raw(index.createStatement(concurrently: false)).run()
        }
      }
      try await uow.sql.raw(
        """
        INSERT INTO schema_migrations (service, version, name, checksum, applied_at_ms, kind)
        VALUES (\(bind: self.service), \(bind: migration.version), \(bind: migration.name), \(bind: migration.checksum(for: uow.dialect)), \(bind: Self.nowMs()), \(bind: migration.kind))
        """
      ).run()
      return true
    }
  }

  /// PostgreSQL: builds each declared index with `CREATE INDEX CONCURRENTLY` on a connection
  /// outside any transaction. The version is already recorded (its statements committed), so
  /// this step is idempotent and re-checked on every run: a valid index is left alone; an
  /// invalid one (a build that failed or was killed) is dropped and built again. A session
  /// advisory lock per index keeps two replicas from building it at once; it is taken with
  /// `pg_try_advisory_lock` in a polling loop, because a session blocked in a lock wait holds
  /// a snapshot the concurrent build would wait for — a deadlock.
  private func buildConcurrentIndexes(of migration: Migration, _ db: Database) async throws {
    for index in migration.concurrentIndexes {
      try await db.read { uow -> Void in
        if try await Self.postgresIndexIsValid(index.name, uow) == true { return }
        let key = Self.lockKey(self.service + "/index/" + index.name)
        while true {
          let row = try await uow.sql.raw("SELECT pg_try_advisory_lock(\(bind: key)) AS locked").first()
          if try row?.decode(column: "locked", as: Bool.self) == true { break }
          try await Task.sleep(nanoseconds: 200_000_000)
        }
        do {
          // Under the lock: someone else may have finished it while this one waited.
          let valid = try await Self.postgresIndexIsValid(index.name, uow)
          if valid == false {
            try await uow.sql.raw("DROP INDEX CONCURRENTLY IF EXISTS \(ident: index.name)").run()
          }
          if valid != true {
            try await uow.sql.raw(index.createStatement(concurrently: true)).run()
          }
        } catch {
          _ = try? await uow.sql.raw("SELECT pg_advisory_unlock(\(bind: key)) AS unlocked").all()
          throw error
        }
        _ = try await uow.sql.raw("SELECT pg_advisory_unlock(\(bind: key)) AS unlocked").all()
      }
    }
  }

  /// nil: no such index; false: present but invalid (being built, or a failed build).
  static func postgresIndexIsValid(_ name: String, _ uow: UnitOfWork) async throws -> Bool? {
    let row = try await uow.sql.raw(
      """
      SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE c.relname = \(bind: name) AND pg_table_is_visible(c.oid)
      """
    ).first()
    return try row?.decode(column: "valid", as: Bool.self)
  }

  /// Creates `schema_migrations` and `data_migrations`, and adds the `kind` column to a
  /// `schema_migrations` made by an earlier build (its rows become contract steps, which is what
  /// they were to the builds that wrote them). Checked on a plain connection first; changed
  /// only under a lock, so replicas starting together don't race.
  private func ensureTables(_ db: Database) async throws {
    let ready = try await db.read { uow -> Bool in
      let kindColumn: SQLQueryString
      let dataTable: SQLQueryString
      if uow.dialect == .postgres {
        kindColumn = "SELECT COUNT(*) AS n FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations') AND attname = 'kind' AND NOT attisdropped"
        dataTable = "SELECT COUNT(*) AS n FROM pg_class WHERE oid = to_regclass('data_migrations')"
      } else {
        kindColumn = "SELECT COUNT(*) AS n FROM pragma_table_info('schema_migrations') WHERE name = 'kind'"
        dataTable = "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'data_migrations'"
      }
      let kind = try await uow.sql.raw(kindColumn).first()?.decode(column: "n", as: Int.self) ?? 0
      let data = try await uow.sql.raw(dataTable).first()?.decode(column: "n", as: Int.self) ?? 0
      return kind > 0 && data > 0
    }
    if ready { return }
    try await db.transaction { uow -> Void in
      if uow.dialect == .postgres {
        try await uow.sql.raw("SELECT pg_advisory_xact_lock(\(bind: Self.tablesLockKey))").run()
      }
      try await uow.sql.raw(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
          service TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL,
          applied_at_ms BIGINT NOT NULL, kind TEXT NOT NULL DEFAULT 'contract', PRIMARY KEY (service, version))
        """
      ).run()
      if uow.dialect == .postgres {
        try await uow.sql.raw("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'contract'").run()
      } else {
        // SQLite has no ADD COLUMN IF NOT EXISTS; BEGIN IMMEDIATE makes check-then-add safe.
        let has =
          try await uow.sql.raw("SELECT COUNT(*) AS n FROM pragma_table_info('schema_migrations') WHERE name = 'kind'")
          .first()?.decode(column: "n", as: Int.self) ?? 0
        if has == 0 {
          try await uow.sql.raw("ALTER TABLE schema_migrations ADD COLUMN kind TEXT NOT NULL DEFAULT 'contract'").run()
        }
      }
      try await uow.sql.raw(
        """
        CREATE TABLE IF NOT EXISTS data_migrations (
          service TEXT NOT NULL, name TEXT NOT NULL, cursor TEXT, batches BIGINT NOT NULL DEFAULT 0,
          done_at_ms BIGINT, updated_at_ms BIGINT NOT NULL, PRIMARY KEY (service, name))
        """
      ).run()
    }
  }

  static func lockKey(_ service: String) -> Int64 {
    let digest = Array(SHA256.hash(data: Array(("quizwire.migrate." + service).utf8)))
    return digest.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
  }

  /// Serializes creating and upgrading the bookkeeping tables (shared by every service).
  static var tablesLockKey: Int64 {
    let digest = Array(SHA256.hash(data: Array("quizwire.migrate-tables".utf8)))
    return digest.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
  }

  static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

extension SQLQueryString {
  /// Raw SQL from a constant in the code (migrations). Never pass input here.
  init(unsafeRaw statement: String) {
    let query: SQLQueryString = "\(unsafeRaw: statement)"
    self = query
  }
}
