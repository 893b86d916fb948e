@preconcurrency import AsyncKit
import Foundation
import GRPCCore
import Logging
import NIOCore
import NIOPosix
import PostgresKit
import SQLKit
import SQLiteKit

/// Which database a service uses, chosen by configuration.
public enum DatabaseLocation: Sendable, Hashable, CustomStringConvertible {
  /// One SQLite file (WAL mode, foreign keys on, busy timeout set).
  case sqlite(path: String)
  /// A PostgreSQL URL (`postgres://user:pass@host:5432/db`) and the pool size.
  case postgres(url: String, poolSize: Int)

  /// Never prints a password.
  public var description: String {
    switch self {
    case .sqlite(let path): return "sqlite:\(path)"
    case .postgres(let url, let size):
      if var parts = URLComponents(string: url) {
        if parts.password != nil { parts.password = "***" }
        return "\(parts.string ?? "postgres://?") (pool \(size))"
      }
      return "postgres (unparsable URL, pool \(size))"
    }
  }
}

public enum SQLDialectKind: String, Sendable, Hashable { case sqlite, postgres }

/// Storage failures callers act on; everything else is an internal error.
public enum StorageError: Error, Sendable, Hashable, CustomStringConvertible {
  /// A unique constraint refused the write (duplicate email, token hash…).
  case uniqueViolation
  case cannotOpen(String)
  /// The database can't be reached right now (connection refused or lost, pool timeout).
  case unavailable(String)

  public var description: String {
    switch self {
    case .uniqueViolation: "unique constraint violated"
    case .cannotOpen(let why): "cannot open database: \(why)"
    case .unavailable(let why): "database unavailable: \(why)"
    }
  }
}

/// Handlers just throw storage errors; callers get a status, never driver details.
extension StorageError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code {
    switch self {
    case .uniqueViolation: .alreadyExists
    // Both are retryable from the caller's side: another replica may be fine.
    case .cannotOpen, .unavailable: .unavailable
    }
  }

  public var rpcErrorMessage: String {
    switch self {
    case .uniqueViolation: "already exists"
    case .cannotOpen, .unavailable: "database unavailable"
    }
  }
}

/// A service's database: a pool of connections over SQLite or PostgreSQL, reached only
/// through units of work. Repositories never open connections of their own.
public final class Database: Sendable {
  public let location: DatabaseLocation
  public let dialect: SQLDialectKind
  private let pool: ConnectionPool
  private let logger: Logger

  private enum ConnectionPool: Sendable {
    case sqlite(PoolBox<TunedSQLiteSource>)
    case postgres(PoolBox<PostgresConnectionSource>)
  }

  public init(_ location: DatabaseLocation, logger: Logger) throws {
    self.location = location
    self.logger = logger
    let loop = MultiThreadedEventLoopGroup.singleton.any()
    switch location {
    case .sqlite(let path):
      let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
      let directory = URL(fileURLWithPath: absolute).deletingLastPathComponent().path
      do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      } catch {
        throw StorageError.cannotOpen("cannot create \(directory): \(error)")
      }
      let source = TunedSQLiteSource(
        base: SQLiteConnectionSource(
          configuration: .init(storage: .file(path: absolute), enableForeignKeys: true)))
      // SQLite has one writer at a time; a few connections let reads overlap it (WAL).
      self.pool = .sqlite(PoolBox(EventLoopGroupConnectionPool(source: source, maxConnectionsPerEventLoop: 4, logger: logger, on: loop)))
      self.dialect = .sqlite
    case .postgres(let url, let size):
      let config: SQLPostgresConfiguration
      do {
        config = try SQLPostgresConfiguration(url: url)
      } catch {
        throw StorageError.cannotOpen("invalid PostgreSQL URL")
      }
      self.pool = .postgres(
        PoolBox(
          EventLoopGroupConnectionPool(
            source: PostgresConnectionSource(sqlConfiguration: config), maxConnectionsPerEventLoop: max(1, size), logger: logger, on: loop)))
      self.dialect = .postgres
    }
  }

  /// Runs `body` on one connection (no transaction): for reads that need no isolation.
  public func read<T: Sendable>(_ body: (UnitOfWork) async throws -> T) async throws -> T {
    try await self.withConnection { sql in try await body(UnitOfWork(sql: sql, dialect: self.dialect)) }
  }

  /// Runs `body` in a transaction: everything it wrote commits together, or nothing does
  /// when it throws.
  public func transaction<T: Sendable>(_ body: (UnitOfWork) async throws -> T) async throws -> T {
    try await self.withConnection { sql in
      // SQLite: take the write lock up front so two writers queue instead of deadlocking.
      try await sql.raw(self.dialect == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
      let result: T
      do {
        result = try await body(UnitOfWork(sql: sql, dialect: self.dialect))
      } catch {
        try? await sql.raw("ROLLBACK").run()
        throw Self.mapError(error)
      }
      do {
        try await sql.raw("COMMIT").run()
      } catch {
        try? await sql.raw("ROLLBACK").run()
        throw Self.mapError(error)
      }
      return result
    }
  }

  /// Whether the database answers (readiness).
  public func ping() async throws {
    try await self.read { uow in _ = try await uow.sql.raw("SELECT 1 AS one").all() }
  }

  public func shutdown() async throws {
    switch self.pool {
    case .sqlite(let box): try await box.pool.shutdownAsync()
    case .postgres(let box): try await box.pool.shutdownAsync()
    }
  }

  private func withConnection<T: Sendable>(_ body: (any SQLDatabase) async throws -> T) async throws -> T {
    switch self.pool {
    case .sqlite(let box):
      let connection = try await Self.acquire { try await box.pool.requestConnection(logger: self.logger).get() }
      defer { box.pool.releaseConnection(connection, logger: self.logger) }
      return try await body(connection.sql())
    case .postgres(let box):
      let connection = try await Self.acquire { try await box.pool.requestConnection(logger: self.logger).get() }
      defer { box.pool.releaseConnection(connection, logger: self.logger) }
      return try await body(connection.sql())
    }
  }

  /// A connection, or `StorageError.unavailable` when the database can't be reached.
  private static func acquire<C>(_ request: () async throws -> C) async throws -> C {
    do {
      return try await request()
    } catch {
      throw Self.mapError(error)
    }
  }

  /// Turns driver errors callers act on into `StorageError`.
  public static func mapError(_ error: any Error) -> any Error {
    if let e = error as? SQLiteError, e.reason == .constraintUniqueFailed || e.reason == .constraintPrimaryKeyFailed {
      return StorageError.uniqueViolation
    }
    if let e = error as? PSQLError, e.code == .server, e.serverInfo?[.sqlState] == "23505" {
      return StorageError.uniqueViolation
    }
    if let e = error as? PSQLError, [.connectionError, .serverClosedConnection, .clientClosedConnection, .poolClosed].contains(e.code) {
      return StorageError.unavailable("\(e.code)")
    }
    if error is ConnectionPoolTimeoutError || error is ConnectionPoolError {
      return StorageError.unavailable("\(error)")
    }
    return error
  }
}

/// One connection's work, inside a transaction or not. Repositories take it and run their
/// queries on `sql`, parameterized only.
public struct UnitOfWork: Sendable {
  public let sql: any SQLDatabase
  public let dialect: SQLDialectKind

  /// Runs a write and maps a unique-constraint violation to `StorageError.uniqueViolation`.
  public func write(_ query: SQLQueryString) async throws {
    do {
      try await self.sql.raw(query).run()
    } catch {
      throw Database.mapError(error)
    }
  }
}

// @unchecked: AsyncKit's pool is a class without a Sendable conformance, but its API is
// thread-safe by design: every method hops to the pool's event loop (see AsyncKit's
// EventLoopGroupConnectionPool docs), and we never touch its state directly.
final class PoolBox<Source: ConnectionPoolSource>: @unchecked Sendable {
  let pool: EventLoopGroupConnectionPool<Source>
  init(_ pool: EventLoopGroupConnectionPool<Source>) { self.pool = pool }
}

/// SQLite connections with the settings every service wants, applied per connection.
struct TunedSQLiteSource: ConnectionPoolSource {
  let base: SQLiteConnectionSource

  func makeConnection(logger: Logger, on eventLoop: any EventLoop) -> EventLoopFuture<SQLiteConnection> {
    self.base.makeConnection(logger: logger, on: eventLoop).flatMap { connection in
      // busy_timeout replaces sqlite-nio's spin-forever busy handler with a bounded wait.
      connection.query("PRAGMA busy_timeout = 5000")
        .flatMap { _ in connection.query("PRAGMA journal_mode = WAL") }
        .flatMap { _ in connection.query("PRAGMA synchronous = NORMAL") }
        .map { _ in connection }
        .flatMapError { error in connection.close().flatMapThrowing { throw error } }
    }
  }
}
