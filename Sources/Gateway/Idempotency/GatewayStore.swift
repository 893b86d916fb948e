import Foundation
import SQLKit
import Storage

/// The gateway's own small database: idempotency records and single-use keys. SQLite
/// (`<data-dir>/gateway.sqlite`) for one gateway; one PostgreSQL database shared by every
/// replica when scaled out, so a key claimed on one replica is seen by all. Every claim is one
/// `INSERT … ON CONFLICT DO NOTHING`: the primary key, not a read-then-write, decides who wins.
public final class GatewayStore: Sendable {
  /// Migration history name in `schema_migrations`.
  public static let serviceName = "gateway"

  /// Forward-only, like a service's.
  public static let migrations: [Migration] = [
    Migration(version: 1, name: "idempotency records and single-use keys") { _ in
      [
        """
        CREATE TABLE gateway_idempotency (
          caller TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, idem_key TEXT NOT NULL,
          fingerprint TEXT NOT NULL, state TEXT NOT NULL, token TEXT NOT NULL,
          status BIGINT NOT NULL DEFAULT 0, headers TEXT NOT NULL DEFAULT '{}', body TEXT NOT NULL DEFAULT '',
          created_at BIGINT NOT NULL, lease_until BIGINT NOT NULL,
          PRIMARY KEY (caller, method, path, idem_key))
        """,
        "CREATE INDEX gateway_idempotency_created ON gateway_idempotency (created_at)",
        "CREATE TABLE gateway_once (once_key TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
        "CREATE INDEX gateway_once_expires ON gateway_once (expires_at)",
      ]
    }
  ]

  public let database: Database

  /// The store on `database` (not migrated yet: `migrate()` before use).
  public init(database: Database) {
    self.database = database
  }

  /// Applies the store's migrations (several replicas may do this at once: the migrator locks).
  public func migrate() async throws {
    _ = try await Migrator(service: Self.serviceName, migrations: Self.migrations).migrate(self.database)
  }

  /// Claims `key` once: true the first time within `ttl` (the caller may go ahead), false for
  /// every later claim until `ttl` has passed since the successful one. Across replicas on a
  /// shared PostgreSQL exactly one claim of a key wins. For single-use secrets (play tickets):
  /// pass a hash of the secret, not the secret.
  public func consumeOnce(key: String, ttl: Duration, now: Date = Date()) async throws -> Bool {
    let at = Self.milliseconds(now)
    let expires = at + max(1, Self.milliseconds(ttl))
    return try await self.database.transaction { uow in
      // An expired claim no longer counts: the key is free again.
      try await uow.write("DELETE FROM gateway_once WHERE once_key = \(bind: key) AND expires_at <= \(bind: at)")
      let rows = try await uow.sql.raw(
        "INSERT INTO gateway_once (once_key, expires_at) VALUES (\(bind: key), \(bind: expires)) ON CONFLICT (once_key) DO NOTHING RETURNING once_key"
      ).all()
      return !rows.isEmpty
    }
  }

  /// Deletes what has expired: idempotency records older than `retention`, claims whose
  /// process died (lease passed), used single-use keys past their TTL. Returns the rows removed.
  @discardableResult
  public func sweep(retention: Duration = IdempotencyPolicy.retention, now: Date = Date()) async throws -> Int {
    let at = Self.milliseconds(now)
    let cutoff = at - Self.milliseconds(retention)
    return try await self.database.transaction { uow in
      let records = try await uow.sql.raw(
        "DELETE FROM gateway_idempotency WHERE created_at <= \(bind: cutoff) OR (state = 'running' AND lease_until <= \(bind: at)) RETURNING idem_key"
      ).all()
      let once = try await uow.sql.raw("DELETE FROM gateway_once WHERE expires_at <= \(bind: at) RETURNING once_key").all()
      return records.count + once.count
    }
  }

  static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
  static func milliseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
  }
}
