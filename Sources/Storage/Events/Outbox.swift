import Foundation
import SQLKit

/// A service's outbox: events appended in the same unit of work as the change they describe,
/// so a committed change always has its event and a rolled-back one never does. Other services
/// consume them later (the events issue serves this table as a resumable feed); the schema is
/// generic on purpose: a type, the key the event is about, that key's version, an opaque
/// payload, the time and the W3C trace context of the write.
///
/// Offsets come from the database's own sequence, so they are unique and increase in *insert*
/// order — and they become visible in commit order. Left alone, two PostgreSQL transactions
/// could commit in the other order: a reader would see offset 8, move past it, and never read
/// 7. So appends are serialized: on PostgreSQL an append takes a transaction-level advisory
/// lock (`appendLock`) held until its transaction ends, so the next appender gets its offset
/// only after this one committed; on SQLite the one writer connection already does that. A
/// consumer that read up to offset n can rely on nothing ever appearing below n (offsets of
/// rolled-back transactions are simply never used). The price: transactions that append
/// commit one at a time from their append on, so append last in the unit of work.
public enum Outbox {
  /// One stored event.
  public typealias Event = EventEnvelope

  /// The change-notification channel an append posts on (after commit), waking the feeds.
  public static let channel = "quizwire_outbox"

  /// The `outbox` table as a schema step: add `Outbox.migration(version: n)` to a service's
  /// migrations. `offset` is quoted everywhere: it is a reserved word in both dialects.
  public static func migration(version: Int) -> Migration {
    Migration(version: version, name: "outbox") { dialect in
      switch dialect {
      case .postgres:
        return [
          """
          CREATE TABLE outbox (
            "offset" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL,
            key_version BIGINT NOT NULL, payload BYTEA NOT NULL, time_ms BIGINT NOT NULL, trace_context TEXT)
          """,
          "CREATE INDEX outbox_key ON outbox (key, key_version)",
        ]
      case .sqlite:
        return [
          """
          CREATE TABLE outbox (
            "offset" INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, key TEXT NOT NULL,
            key_version BIGINT NOT NULL, payload BLOB NOT NULL, time_ms BIGINT NOT NULL, trace_context TEXT)
          """,
          "CREATE INDEX outbox_key ON outbox (key, key_version)",
        ]
      }
    }
  }

  /// Appends one event inside `uow`'s transaction (call it from the transaction that makes the
  /// change). `keyVersion` must grow with every change of `key` so consumers can drop stale
  /// or repeated events.
  public static func append(
    type: String, key: String, keyVersion: Int64, payload: Data, traceContext: String? = nil,
    timeMs: Int64 = Int64(Date().timeIntervalSince1970 * 1000), in uow: UnitOfWork
  ) async throws {
    if uow.dialect == .postgres {
      try await uow.sql.raw("SELECT pg_advisory_xact_lock(\(bind: Self.appendLock))").run()
    }
    try await uow.write(
      """
      INSERT INTO outbox (type, key, key_version, payload, time_ms, trace_context)
      VALUES (\(bind: type), \(bind: key), \(bind: keyVersion), \(bind: payload), \(bind: timeMs), \(bind: traceContext))
      """)
    try await ChangeNotifier.post(channel: Self.channel, payload: "", in: uow)
  }

  /// The advisory lock appends take on PostgreSQL ("QWOUTBOX"). One outbox per database, so
  /// one key per database serializes exactly one service's appends.
  public static let appendLock: Int64 = 0x5157_4F55_5442_4F58

  /// Events after `offset` in offset order, at most `limit`; only those of `types` when given.
  public static func read(after offset: Int64, types: [String]? = nil, limit: Int, in uow: UnitOfWork) async throws -> [Event] {
    let filter: SQLQueryString = types.map { " AND type IN (\(binds: $0))" } ?? ""
    let select: SQLQueryString = """
      SELECT "offset", type, key, key_version, payload, time_ms, trace_context FROM outbox WHERE "offset" > \(bind: offset)
      """
    let rows = try await uow.sql.raw(select + filter + #" ORDER BY "offset" LIMIT \#(bind: limit)"#).all()
    return try rows.map { row in
      Event(
        offset: try row.decode(column: "offset", as: Int64.self), type: try row.decode(column: "type", as: String.self),
        key: try row.decode(column: "key", as: String.self), keyVersion: try row.decode(column: "key_version", as: Int64.self),
        payload: try row.decode(column: "payload", as: Data.self), timeMs: try row.decode(column: "time_ms", as: Int64.self),
        traceContext: try row.decode(column: "trace_context", as: String?.self))
    }
  }

  /// The greatest committed offset (0 for an empty outbox). Retention never purges the
  /// newest row, so the head survives purges.
  public static func head(in uow: UnitOfWork) async throws -> Int64 {
    let row = try await uow.sql.raw(#"SELECT COALESCE(MAX("offset"), 0) AS head FROM outbox"#).first()
    return try row?.decode(column: "head", as: Int64.self) ?? 0
  }
}

/// One event as stored by its producer and delivered to consumers.
public struct EventEnvelope: Sendable, Hashable {
  public var offset: Int64
  /// "user.renamed" …
  public var type: String
  /// What it is about (a user id …).
  public var key: String
  /// Grows with every change of `key`: consumers apply only newer versions.
  public var keyVersion: Int64
  /// The serialized payload message.
  public var payload: Data
  public var timeMs: Int64
  /// W3C traceparent of the write that emitted it.
  public var traceContext: String?

  public init(offset: Int64, type: String, key: String, keyVersion: Int64, payload: Data, timeMs: Int64, traceContext: String? = nil) {
    self.offset = offset
    self.type = type
    self.key = key
    self.keyVersion = keyVersion
    self.payload = payload
    self.timeMs = timeMs
    self.traceContext = traceContext
  }
}
