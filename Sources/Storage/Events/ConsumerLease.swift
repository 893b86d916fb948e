import Crypto
import Foundation
import Logging
import PostgresKit
import PostgresNIO
import Synchronization

/// "Only one replica of this consumer group works at a time": a lease per name.
/// - PostgreSQL: a session advisory lock held on a connection of its own (outside the pool).
///   When the holder dies its connection closes and the server releases the lock; a waiting
///   replica polls `pg_try_advisory_lock` and takes over within `pollInterval`. The holder
///   proves its connection alive with a round trip every `heartbeatInterval` and stops
///   working the moment it cannot.
/// - SQLite: one process owns the file, so an in-process lock on (file, name) suffices.
///
/// The lease is a courtesy that avoids wasted work, not the only guard: effects commit with a
/// compare-and-set of the group's offset (`ConsumerStore.advance`), so a holder that lost the
/// lease without noticing cannot apply anything twice.
public final class ConsumerLease: Sendable {
  public struct Timing: Sendable {
    public var pollInterval: Duration = .milliseconds(500)
    public var heartbeatInterval: Duration = .seconds(2)
    public var heartbeatTimeout: Duration = .seconds(3)
    public init() {}
  }

  /// The lease ended while the work was running (the connection was lost).
  public struct Lost: Error, CustomStringConvertible {
    public var name: String
    public var description: String { "lease \(name) lost" }
  }

  public let name: String
  private let database: Database
  private let logger: Logger
  private let timing: Timing

  public init(name: String, database: Database, logger: Logger, timing: Timing = Timing()) {
    self.name = name
    self.database = database
    self.logger = logger
    self.timing = timing
  }

  /// The advisory-lock key of `name`: the first 8 bytes of its SHA-256.
  public static func key(of name: String) -> Int64 {
    let digest = Array(SHA256.hash(data: Data(("quizwire.lease." + name).utf8)))
    return digest.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
  }

  /// Waits for the lease, runs `body` while holding it and releases it. `body` is cancelled
  /// and `Lost` thrown when the lease is lost midway.
  public func whileHeld<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    switch self.database.location {
    case .sqlite:
      let key = (self.database.localKey ?? "") + "|" + self.name
      while !LocalLeases.held.withLock({ $0.insert(key).inserted }) {
        try await Task.sleep(for: self.timing.pollInterval)
      }
      defer { _ = LocalLeases.held.withLock { $0.remove(key) } }
      return try await body()
    case .postgres(let url, _):
      let configuration = try SQLPostgresConfiguration(url: url).coreConfiguration
      let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: self.logger)
      do {
        let result = try await self.hold(on: connection, body)
        try? await connection.close()
        return result
      } catch {
        try? await connection.close()
        throw error
      }
    }
  }

  private func hold<T: Sendable>(on connection: PostgresConnection, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let key = Self.key(of: self.name)
    while true {
      try Task.checkCancellation()
      let rows = try await connection.query("SELECT pg_try_advisory_lock(\(key)) AS held", logger: self.logger)
      var held = false
      for try await row in rows { held = try row.decode(Bool.self) }
      if held { break }
      try await Task.sleep(for: self.timing.pollInterval)
    }
    self.logger.info("lease acquired", metadata: ["lease": .string(self.name)])
    let timing = self.timing
    let logger = self.logger
    let name = self.name
    let result = try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await body() }
      group.addTask {
        while true {
          try await Task.sleep(for: timing.heartbeatInterval)
          guard await ChangeNotifier.roundTrip(on: connection, timeout: timing.heartbeatTimeout, logger: logger) else {
            logger.warning("lease lost: its connection does not answer", metadata: ["lease": .string(name)])
            throw Lost(name: name)
          }
        }
      }
      defer { group.cancelAll() }
      while let next = try await group.next() {
        if let value = next { return value }
      }
      throw CancellationError()
    }
    // Closing the connection releases the lock too; unlocking first frees it at once.
    _ = try? await connection.query("SELECT pg_advisory_unlock(\(key))", logger: self.logger).collect()
    return result
  }
}

enum LocalLeases {
  static let held = Mutex<Set<String>>([])
}
