import Crypto
import Foundation
import SQLKit

/// One forward-only schema change. `statements` may differ per dialect (types, mostly); the
/// checksum covers the statements of the dialect being migrated.
public struct Migration: Sendable {
  public let version: Int
  public let name: String
  public let statements: @Sendable (SQLDialectKind) -> [String]

  public init(version: Int, name: String, statements: @escaping @Sendable (SQLDialectKind) -> [String]) {
    self.version = version
    self.name = name
    self.statements = statements
  }

  public func checksum(for dialect: SQLDialectKind) -> String {
    let text = self.statements(dialect).joined(separator: ";\n")
    return SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
  }
}

public enum MigrationError: Error, Sendable, Hashable, CustomStringConvertible {
  case checksumChanged(service: String, version: Int, name: String)
  case databaseNewerThanCode(service: String, databaseVersion: Int, codeVersion: Int)
  case badMigrationList(String)

  public var description: String {
    switch self {
    case .checksumChanged(let s, let v, let n):
      "\(s): migration \(v) (\(n)) was changed after it was applied; migrations are forward-only — add a new one instead"
    case .databaseNewerThanCode(let s, let db, let code):
      "\(s): the database is at migration \(db) but this build only knows up to \(code); run a newer build"
    case .badMigrationList(let why): "invalid migration list: \(why)"
    }
  }
}

/// Applies a service's numbered migrations in order, each in its own transaction, recording
/// version, name and checksum in `schema_migrations`. Refuses to run when an applied
/// migration changed or the database is ahead of the code.
public struct Migrator: Sendable {
  public let service: String
  public let migrations: [Migration]

  public init(service: String, migrations: [Migration]) throws {
    let versions = migrations.map(\.version)
    guard !versions.isEmpty, versions == Array(1...versions.count) else {
      throw MigrationError.badMigrationList("versions must be 1, 2, 3, … in order; got \(versions)")
    }
    self.service = service
    self.migrations = migrations
  }

  public struct Plan: Sendable, Hashable {
    /// Versions already applied.
    public var applied: [Int]
    /// Still to apply, in order.
    public var pending: [Int]
  }

  /// What `migrate` would do; also the integrity check (throws on tampering or a newer DB).
  public func plan(_ db: Database) async throws -> Plan {
    try await self.ensureTable(db)
    let applied = try await db.read { uow in
      try await uow.sql.raw("""
        SELECT version, name, checksum FROM schema_migrations WHERE service = \(bind: self.service) ORDER BY version
        """).all()
    }
    var appliedVersions: [Int] = []
    for row in applied {
      let version = try row.decode(column: "version", as: Int.self)
      let checksum = try row.decode(column: "checksum", as: String.self)
      guard let known = self.migrations.first(where: { $0.version == version }) else {
        throw MigrationError.databaseNewerThanCode(service: self.service, databaseVersion: version, codeVersion: self.migrations.count)
      }
      guard known.checksum(for: db.dialect) == checksum else {
        throw MigrationError.checksumChanged(service: self.service, version: version, name: known.name)
      }
      appliedVersions.append(version)
    }
    let pending = self.migrations.map(\.version).filter { !appliedVersions.contains($0) }
    return Plan(applied: appliedVersions, pending: pending)
  }

  /// Applies every pending migration; returns the versions applied (empty: up to date).
  @discardableResult
  public func migrate(_ db: Database) async throws -> [Int] {
    let plan = try await self.plan(db)
    var done: [Int] = []
    for version in plan.pending {
      let migration = self.migrations[version - 1]
      let applied = try await db.transaction { uow -> Bool in
        if uow.dialect == .postgres {
          // Replicas starting together: one migrates, the others wait and then see it done.
          try await uow.sql.raw("SELECT pg_advisory_xact_lock(\(bind: Int64(Self.lockKey(self.service))))").run()
        }
        // (SQLite's BEGIN IMMEDIATE already serializes writers.) Another process may have
        // applied it since the plan was made.
        let already = try await uow.sql.raw("""
          SELECT version FROM schema_migrations WHERE service = \(bind: self.service) AND version = \(bind: version)
          """).all()
        if !already.isEmpty { return false }
        for statement in migration.statements(uow.dialect) {
          // Statements are constants in the code, never built from input.
          try await uow.sql.raw(SQLQueryString(unsafeRaw: statement)).run()
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try await uow.sql.raw("""
          INSERT INTO schema_migrations (service, version, name, checksum, applied_at_ms)
          VALUES (\(bind: self.service), \(bind: version), \(bind: migration.name), \(bind: migration.checksum(for: uow.dialect)), \(bind: now))
          """).run()
        return true
      }
      if applied { done.append(version) }
    }
    return done
  }

  private func ensureTable(_ db: Database) async throws {
    try await db.read { uow in
      try await uow.sql.raw("""
        CREATE TABLE IF NOT EXISTS schema_migrations (
          service TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL,
          applied_at_ms BIGINT NOT NULL, PRIMARY KEY (service, version))
        """).run()
    }
  }

  static func lockKey(_ service: String) -> Int64 {
    let digest = Array(SHA256.hash(data: Array(("quizwire.migrate." + service).utf8)))
    return digest.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
  }
}

extension SQLQueryString {
  /// Raw SQL from a constant in the code (migrations). Never pass input here.
  init(unsafeRaw statement: String) {
    let query: SQLQueryString = "\(unsafeRaw: statement)"
    self = query
  }
}
