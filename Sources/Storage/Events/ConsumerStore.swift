import Foundation
import SQLKit

/// A durable consumer's state, kept in the consuming service's own database so it commits in
/// the same unit of work as the effect of each event:
/// - `event_offsets`: how far each consumer group has applied its feed, advanced only by
///   compare-and-set (a replica that lost its lease cannot move it);
/// - `event_key_versions`: per key, the newest version applied, so a repeated or older event
///   (redelivery, an old dead letter replayed) has no effect;
/// - `event_dead_letters`: events that kept failing, parked so the feed goes on; an operator
///   asks for a retry (`quizwire events dlq retry`), the running consumer replays it.
public enum ConsumerStore {
  /// The consumer tables as a schema step of the consuming service.
  public static func migration(version: Int) -> Migration {
    Migration(version: version, name: "event consumer offsets, key versions, dead letters") { dialect in
      let blob = dialect == .postgres ? "BYTEA" : "BLOB"
      return [
        """
        CREATE TABLE event_offsets (
          consumer_group TEXT PRIMARY KEY, feed TEXT NOT NULL, "offset" BIGINT NOT NULL, updated_ms BIGINT NOT NULL)
        """,
        """
        CREATE TABLE event_key_versions (
          consumer_group TEXT NOT NULL, key TEXT NOT NULL, version BIGINT NOT NULL, "offset" BIGINT NOT NULL,
          PRIMARY KEY (consumer_group, key))
        """,
        """
        CREATE TABLE event_dead_letters (
          id TEXT PRIMARY KEY, consumer_group TEXT NOT NULL, feed TEXT NOT NULL, "offset" BIGINT NOT NULL, type TEXT NOT NULL,
          key TEXT NOT NULL, key_version BIGINT NOT NULL, payload \(blob) NOT NULL, time_ms BIGINT NOT NULL, trace_context TEXT,
          error TEXT NOT NULL, attempts INTEGER NOT NULL, state TEXT NOT NULL, parked_ms BIGINT NOT NULL, resolved_ms BIGINT)
        """,
        "CREATE INDEX event_dead_letters_state ON event_dead_letters (state, consumer_group, parked_ms)",
      ]
    }
  }

  /// Another replica moved the group's offset: this one no longer holds the group.
  public struct OffsetMoved: Error, CustomStringConvertible {
    public var group: String
    public var expected: Int64?
    public var description: String {
      "consumer group \(group): the stored offset is no longer \(expected.map(String.init) ?? "unset"); another replica consumes it"
    }
  }

  /// The group's stored offset, nil before its first event.
  public static func offset(group: String, in uow: UnitOfWork) async throws -> Int64? {
    let row = try await uow.sql.raw(#"SELECT "offset" FROM event_offsets WHERE consumer_group = \#(bind: group)"#).first()
    return try row?.decode(column: "offset", as: Int64.self)
  }

  /// Moves the group's offset from `expected` to `offset`, or throws `OffsetMoved` (which
  /// rolls back the effect it was to commit with).
  public static func advance(group: String, feed: String, from expected: Int64?, to offset: Int64, nowMs: Int64, in uow: UnitOfWork)
    async throws
  {
    guard let expected else {
      do {
        try await uow.write(
          #"""
          INSERT INTO event_offsets (consumer_group, feed, "offset", updated_ms)
          VALUES (\#(bind: group), \#(bind: feed), \#(bind: offset), \#(bind: nowMs))
          """#)
      } catch StorageError.uniqueViolation {
        throw OffsetMoved(group: group, expected: nil)
      }
      return
    }
    let rows = try await uow.sql.raw(
      #"""
      UPDATE event_offsets SET "offset" = \#(bind: offset), updated_ms = \#(bind: nowMs)
      WHERE consumer_group = \#(bind: group) AND "offset" = \#(bind: expected) RETURNING consumer_group
      """#
    ).all()
    guard rows.count == 1 else { throw OffsetMoved(group: group, expected: expected) }
  }

  /// Records the event at `offset` with `version` as applied for `key` if it is newer than
  /// the one applied; false when it is not (the event must have no effect). Newer means a
  /// greater version, or the same version at a greater offset (one change may emit several
  /// events, e.g. quiz.changed and quiz.published, all carrying the key's new version). On
  /// PostgreSQL the key's row is locked until the unit of work ends, so two replays of one
  /// key serialize; two first inserts collide on the primary key and the loser retries.
  public static func claim(group: String, key: String, version: Int64, offset: Int64, in uow: UnitOfWork) async throws -> Bool {
    let lock: SQLQueryString = uow.dialect == .postgres ? "FOR UPDATE" : ""
    let row = try await uow.sql.raw(
      #"SELECT version, "offset" FROM event_key_versions WHERE consumer_group = \#(bind: group) AND key = \#(bind: key) "# + lock
    ).first()
    if let row {
      let applied = (try row.decode(column: "version", as: Int64.self), try row.decode(column: "offset", as: Int64.self))
      guard (version, offset) > applied else { return false }
      try await uow.write(
        #"""
        UPDATE event_key_versions SET version = \#(bind: version), "offset" = \#(bind: offset)
        WHERE consumer_group = \#(bind: group) AND key = \#(bind: key)
        """#)
    } else {
      try await uow.write(
        #"""
        INSERT INTO event_key_versions (consumer_group, key, version, "offset")
        VALUES (\#(bind: group), \#(bind: key), \#(bind: version), \#(bind: offset))
        """#)
    }
    return true
  }

  /// One parked event.
  public struct DeadLetter: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
      /// Waiting for an operator.
      case parked
      /// An operator asked for a replay; the running consumer takes it.
      case retry
      /// Replayed successfully, or superseded by a newer version of its key.
      case resolved
    }
    public var id: String
    public var group: String
    public var feed: String
    public var event: EventEnvelope
    public var error: String
    public var attempts: Int
    public var state: State
    public var parkedMs: Int64
    public var resolvedMs: Int64?
  }

  /// Longest error text kept with a dead letter.
  public static let maxErrorLength = 500

  /// Parks `event` after it failed `attempts` times.
  public static func park(
    group: String, feed: String, event: EventEnvelope, error: String, attempts: Int, nowMs: Int64, in uow: UnitOfWork
  ) async throws {
    let id = "dl_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    try await uow.write(
      #"""
      INSERT INTO event_dead_letters (id, consumer_group, feed, "offset", type, key, key_version, payload, time_ms, trace_context,
        error, attempts, state, parked_ms, resolved_ms)
      VALUES (\#(bind: id), \#(bind: group), \#(bind: feed), \#(bind: event.offset), \#(bind: event.type), \#(bind: event.key),
        \#(bind: event.keyVersion), \#(bind: event.payload), \#(bind: event.timeMs), \#(bind: event.traceContext),
        \#(bind: String(error.prefix(Self.maxErrorLength))), \#(bind: attempts), 'parked', \#(bind: nowMs), NULL)
      """#)
  }

  /// Dead letters, oldest first; all states unless `state` is given.
  public static func deadLetters(group: String? = nil, state: DeadLetter.State? = nil, limit: Int = 100, in uow: UnitOfWork)
    async throws -> [DeadLetter]
  {
    let byGroup: SQLQueryString = group.map { " AND consumer_group = \(bind: $0)" } ?? ""
    let byState: SQLQueryString = state.map { " AND state = \(bind: $0.rawValue)" } ?? ""
    let rows = try await uow.sql.raw(
      #"""
      SELECT id, consumer_group, feed, "offset", type, key, key_version, payload, time_ms, trace_context, error, attempts, state,
        parked_ms, resolved_ms
      FROM event_dead_letters WHERE 1 = 1
      """# + byGroup + byState + " ORDER BY parked_ms, id LIMIT \(bind: limit)"
    ).all()
    return try rows.map { row in
      DeadLetter(
        id: try row.decode(column: "id", as: String.self), group: try row.decode(column: "consumer_group", as: String.self),
        feed: try row.decode(column: "feed", as: String.self),
        event: EventEnvelope(
          offset: try row.decode(column: "offset", as: Int64.self), type: try row.decode(column: "type", as: String.self),
          key: try row.decode(column: "key", as: String.self), keyVersion: try row.decode(column: "key_version", as: Int64.self),
          payload: try row.decode(column: "payload", as: Data.self), timeMs: try row.decode(column: "time_ms", as: Int64.self),
          traceContext: try row.decode(column: "trace_context", as: String?.self)),
        error: try row.decode(column: "error", as: String.self), attempts: try row.decode(column: "attempts", as: Int.self),
        state: DeadLetter.State(rawValue: try row.decode(column: "state", as: String.self)) ?? .parked,
        parkedMs: try row.decode(column: "parked_ms", as: Int64.self), resolvedMs: try row.decode(column: "resolved_ms", as: Int64?.self))
    }
  }

  /// Asks the running consumer to replay parked letters: one by id, or every parked one of
  /// `group` (all groups when nil) with `id == nil`. Returns how many were marked.
  public static func requestRetry(id: String?, group: String? = nil, in uow: UnitOfWork) async throws -> Int {
    let byID: SQLQueryString = id.map { " AND id = \(bind: $0)" } ?? ""
    let byGroup: SQLQueryString = group.map { " AND consumer_group = \(bind: $0)" } ?? ""
    let rows = try await uow.sql.raw(
      "UPDATE event_dead_letters SET state = 'retry' WHERE state = 'parked'" + byID + byGroup + " RETURNING id"
    ).all()
    return rows.count
  }

  /// Ends a replay: resolved, or parked again with the new error.
  public static func finishRetry(id: String, error: String?, nowMs: Int64, in uow: UnitOfWork) async throws {
    if let error {
      try await uow.write(
        """
        UPDATE event_dead_letters SET state = 'parked', attempts = attempts + 1, error = \(bind: String(error.prefix(Self.maxErrorLength)))
        WHERE id = \(bind: id)
        """)
    } else {
      try await uow.write("UPDATE event_dead_letters SET state = 'resolved', resolved_ms = \(bind: nowMs) WHERE id = \(bind: id)")
    }
  }
}
