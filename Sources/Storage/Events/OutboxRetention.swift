import Foundation
import SQLKit

/// A named slice of a service's outbox that consumers subscribe to (`events.v1.EventFeed`):
/// the event types it carries and what a consumer that fell behind retention does instead.
public struct EventTopic: Sendable, Hashable {
  /// "users", "quizzes" …
  public var name: String
  /// The event types of the topic ("user.renamed" …).
  public var types: [String]
  /// The producer's current-state RPC a consumer resyncs from after OUT_OF_RANGE.
  public var resync: String

  public init(name: String, types: [String], resync: String) {
    self.name = name
    self.types = types
    self.resync = resync
  }
}

/// The producer's side of retention: which consumer groups acknowledged what, how far each
/// topic was purged, and the purge itself (run by a recurring job).
///
/// A row goes once it is older than the window and every group registered on its topic
/// acknowledged it, or once it is older than the maximum window whatever the groups say
/// (a group that stopped consuming must not pin the outbox forever; it then gets
/// OUT_OF_RANGE and resyncs). The newest row is never purged: it carries the head.
public enum OutboxRetention {
  public struct Policy: Sendable, Hashable {
    public var window: Duration = .seconds(7 * 86_400)
    public var maximumWindow: Duration = .seconds(30 * 86_400)
    public init() {}
  }

  /// The producer's feed tables: acknowledgements and purge horizons.
  public static func migration(version: Int) -> Migration {
    Migration(version: version, name: "outbox consumers and retention") { _ in
      [
        """
        CREATE TABLE outbox_consumers (
          topic TEXT NOT NULL, consumer_group TEXT NOT NULL, acked_offset BIGINT NOT NULL, acked_ms BIGINT NOT NULL,
          PRIMARY KEY (topic, consumer_group))
        """,
        "CREATE TABLE outbox_retention (topic TEXT PRIMARY KEY, purged_through BIGINT NOT NULL, purged_ms BIGINT NOT NULL)",
      ]
    }
  }

  /// Records that `group` has durably applied `topic` up to `offset`.
  public static func acknowledge(topic: String, group: String, offset: Int64, nowMs: Int64 = Self.nowMs(), in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO outbox_consumers (topic, consumer_group, acked_offset, acked_ms)
      VALUES (\(bind: topic), \(bind: group), \(bind: offset), \(bind: nowMs))
      ON CONFLICT (topic, consumer_group) DO UPDATE SET acked_offset = excluded.acked_offset, acked_ms = excluded.acked_ms
      """)
  }

  /// The registered groups of `topic` and their acknowledgements.
  public static func acknowledgements(topic: String, in uow: UnitOfWork) async throws -> [String: Int64] {
    let rows = try await uow.sql.raw(
      "SELECT consumer_group, acked_offset FROM outbox_consumers WHERE topic = \(bind: topic)"
    ).all()
    var result: [String: Int64] = [:]
    for row in rows {
      result[try row.decode(column: "consumer_group", as: String.self)] = try row.decode(column: "acked_offset", as: Int64.self)
    }
    return result
  }

  /// The greatest offset of `topic` purged so far (0: nothing purged). A subscriber asking
  /// for events after an offset below it would miss some: OUT_OF_RANGE.
  public static func horizon(topic: String, in uow: UnitOfWork) async throws -> Int64 {
    let row = try await uow.sql.raw("SELECT purged_through FROM outbox_retention WHERE topic = \(bind: topic)").first()
    return try row?.decode(column: "purged_through", as: Int64.self) ?? 0
  }

  /// Purges what the policy allows, topic by topic, and moves each topic's horizon. Returns
  /// the number of rows removed. Rows of types no topic carries go after the window.
  @discardableResult
  public static func purge(topics: [EventTopic], policy: Policy = Policy(), nowMs: Int64 = Self.nowMs(), in uow: UnitOfWork) async throws
    -> Int
  {
    let head = try await Outbox.head(in: uow)
    let windowStart = nowMs - Self.milliseconds(policy.window)
    let maximumStart = nowMs - Self.milliseconds(policy.maximumWindow)
    var removed = 0
    for topic in topics where !topic.types.isEmpty {
      let acks = try await self.acknowledgements(topic: topic.name, in: uow)
      // No registered group: nothing to wait for beyond the window.
      let acknowledged = acks.values.min() ?? head
      let condition: SQLQueryString = """
        type IN (\(binds: topic.types)) AND "offset" < \(bind: head)
        AND ((time_ms < \(bind: windowStart) AND "offset" <= \(bind: acknowledged)) OR time_ms < \(bind: maximumStart))
        """
      let row = try await uow.sql.raw(#"SELECT MAX("offset") AS through, COUNT(*) AS n FROM outbox WHERE "# + condition).first()
      let count = try row?.decode(column: "n", as: Int.self) ?? 0
      guard count > 0, let through = try row?.decode(column: "through", as: Int64?.self) else { continue }
      try await uow.write("DELETE FROM outbox WHERE " + condition)
      try await uow.write(
        """
        INSERT INTO outbox_retention (topic, purged_through, purged_ms) VALUES (\(bind: topic.name), \(bind: through), \(bind: nowMs))
        ON CONFLICT (topic) DO UPDATE SET purged_through = excluded.purged_through, purged_ms = excluded.purged_ms
        """)
      removed += count
    }
    let carried = topics.flatMap(\.types)
    let stray: SQLQueryString = carried.isEmpty ? "" : " AND type NOT IN (\(binds: carried))"
    let strayRow = try await uow.sql.raw(
      #"SELECT COUNT(*) AS n FROM outbox WHERE time_ms < \#(bind: windowStart) AND "offset" < \#(bind: head)"# + stray
    ).first()
    let strayCount = try strayRow?.decode(column: "n", as: Int.self) ?? 0
    if strayCount > 0 {
      try await uow.write(#"DELETE FROM outbox WHERE time_ms < \#(bind: windowStart) AND "offset" < \#(bind: head)"# + stray)
      removed += strayCount
    }
    return removed
  }

  public static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

  static func milliseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
  }
}
