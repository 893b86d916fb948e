@preconcurrency import AsyncKit
import Foundation
import GRPCCore
import Logging
import NIOCore
import NIOPosix
import PostgresKit
import SQLKit
import SQLiteKit
import Synchronization

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

/// A service's database, reached only through units of work; repositories never open
/// connections of their own.
///
/// SQLite has one writer at a time, so writes go through one writer connection behind a FIFO
/// gate: waiting writers wait as suspended tasks, never on a thread, and `BEGIN IMMEDIATE` never
/// busy-waits on another connection of this process (`busy_timeout` stays for other
/// processes). Reads use their own connections (WAL lets them run beside the writer). All
/// SQLite calls run on a thread pool of the database's own, one thread per connection, so
/// nothing else (password hashing) can take the threads a lock holder needs.
/// PostgreSQL: one gate of `poolSize` permits in front of the pool. Gates bound the wait and
/// the queue: beyond either a caller gets `StorageError.busy` (RESOURCE_EXHAUSTED with
/// RetryInfo), not a stall.
public final class Database: Sendable {
  /// How many wait, and how long.
  public struct Limits: Sendable, Hashable {
    /// SQLite read connections (besides the one writer).
    public var sqliteReaders = 4
    /// Callers that may wait for each gate before the next is refused at once.
    public var maxWaiting = 512
    /// How long a caller waits for a connection before it is refused.
    public var waitTimeout: Duration = .seconds(5)
    public init() {}
  }

  public let location: DatabaseLocation
  public let dialect: SQLDialectKind
  private let backend: Backend
  private let logger: Logger
  private let contention: ContentionLog
  private let closed = Mutex(false)
  /// SQLite: the standardized file path (in-process notifications); nil on PostgreSQL.
  let localKey: String?

  private enum Backend: Sendable {
    case sqlite(writer: Lane<TunedSQLiteSource>, readers: Lane<TunedSQLiteSource>, threads: NIOThreadPool)
    case postgres(Lane<PostgresConnectionSource>)
  }

  public init(_ location: DatabaseLocation, limits: Limits = Limits(), logger: Logger) throws {
    self.location = location
    self.logger = logger
    self.contention = ContentionLog(logger: logger)
    let loop = MultiThreadedEventLoopGroup.singleton.any()
    switch location {
    case .sqlite(let path):
      let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
      self.localKey = absolute
      let directory = URL(fileURLWithPath: absolute).deletingLastPathComponent().path
      do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      } catch {
        throw StorageError.cannotOpen("cannot create \(directory): \(error)")
      }
      let readers = max(1, limits.sqliteReaders)
      // One thread per connection: a statement never waits for a thread.
      let threads = NIOThreadPool(numberOfThreads: 1 + readers)
      threads.start()
      func lane(_ name: String, permits: Int, readOnly: Bool) -> Lane<TunedSQLiteSource> {
        let base = SQLiteConnectionSource(configuration: .init(storage: .file(path: absolute), enableForeignKeys: true), threadPool: threads)
        return Lane(
          gate: BoundedGate(name: name, limits: .init(permits: permits, maxWaiting: limits.maxWaiting, waitTimeout: limits.waitTimeout)),
          pool: EventLoopGroupConnectionPool(
            source: TunedSQLiteSource(base: base, readOnly: readOnly), maxConnectionsPerEventLoop: permits, logger: logger, on: loop))
      }
      self.backend = .sqlite(
        writer: lane("writer", permits: 1, readOnly: false), readers: lane("readers", permits: readers, readOnly: true), threads: threads)
      self.dialect = .sqlite
    case .postgres(let url, let size):
      self.localKey = nil
      let config: SQLPostgresConfiguration
      do {
        config = try SQLPostgresConfiguration(url: url)
      } catch {
        throw StorageError.cannotOpen("invalid PostgreSQL URL")
      }
      let permits = max(1, size)
      self.backend = .postgres(
        Lane(
          gate: BoundedGate(name: "pool", limits: .init(permits: permits, maxWaiting: limits.maxWaiting, waitTimeout: limits.waitTimeout)),
          pool: EventLoopGroupConnectionPool(
            source: PostgresConnectionSource(sqlConfiguration: config), maxConnectionsPerEventLoop: permits, logger: logger, on: loop)))
      self.dialect = .postgres
    }
  }

  /// Runs `body` on one connection (no transaction): for reads that need no isolation. On
  /// SQLite the connection is read-only, so a write here fails instead of contending.
  public func read<T: Sendable>(_ body: (UnitOfWork) async throws -> T) async throws -> T {
    switch self.backend {
    case .sqlite(_, let readers, _):
      try await self.run(readers) { try await body(UnitOfWork(sql: $0.sql(), dialect: .sqlite, commitHooks: nil, localKey: self.localKey)) }
    case .postgres(let lane):
      try await self.run(lane) { try await body(UnitOfWork(sql: $0.sql(), dialect: .postgres, commitHooks: nil)) }
    }
  }

  /// Runs `body` in a transaction: everything it wrote commits together, or nothing does
  /// when it throws.
  public func transaction<T: Sendable>(_ body: (UnitOfWork) async throws -> T) async throws -> T {
    // A transaction inside one would wait for its own writer until the wait limit and then
    // read as contention; it is a programming error, so it fails at once and says so.
    guard Self.inTransactionOf != ObjectIdentifier(self) else { throw NestedTransactionError() }
    return try await Self.$inTransactionOf.withValue(ObjectIdentifier(self)) {
      switch self.backend {
      case .sqlite(let writer, _, _):
        // The writer gate makes this the only writer in the process, so taking the write lock
        // up front only waits for other processes (busy_timeout).
        try await self.run(writer) {
          try await Self.inTransaction(
            UnitOfWork(sql: $0.sql(), dialect: .sqlite, commitHooks: CommitHooks(), localKey: self.localKey), begin: "BEGIN IMMEDIATE", body)
        }
      case .postgres(let lane):
        try await self.run(lane) {
          try await Self.inTransaction(UnitOfWork(sql: $0.sql(), dialect: .postgres, commitHooks: CommitHooks()), begin: "BEGIN", body)
        }
      }
    }
  }

  /// The database whose transaction the current task (or its parent) is running.
  @TaskLocal private static var inTransactionOf: ObjectIdentifier?

  private static func inTransaction<T: Sendable>(
    _ uow: UnitOfWork, begin: SQLQueryString, _ body: (UnitOfWork) async throws -> T
  ) async throws -> T {
    try await uow.sql.raw(begin).run()
    let result: T
    do {
      result = try await body(uow)
    } catch {
      try? await uow.sql.raw("ROLLBACK").run()
      throw error
    }
    do {
      try await uow.sql.raw("COMMIT").run()
    } catch {
      try? await uow.sql.raw("ROLLBACK").run()
      throw error
    }
    uow.commitHooks?.run()
    return result
  }

  /// Whether the database answers (readiness). On SQLite a reader: writes never delay it.
  public func ping() async throws {
    try await self.read { uow in _ = try await uow.sql.raw("SELECT 1 AS one").all() }
  }

  /// Gates by name ("writer" and "readers" on SQLite, "pool" on PostgreSQL), for metrics.
  public var gates: [BoundedGate] {
    switch self.backend {
    case .sqlite(let writer, let readers, _): [writer.gate, readers.gate]
    case .postgres(let lane): [lane.gate]
    }
  }

  /// Closes every connection, then the SQLite threads. A second call does nothing.
  public func shutdown() async throws {
    guard
      self.closed.withLock({ closed in
        defer { closed = true }; return !closed
      })
    else { return }
    switch self.backend {
    case .sqlite(let writer, let readers, let threads):
      var failure: (any Error)?
      do { try await writer.pool.shutdownAsync() } catch { failure = error }
      do { try await readers.pool.shutdownAsync() } catch { failure = failure ?? error }
      // Last: closing a connection runs on these threads.
      try await threads.shutdownGracefully()
      if let failure { throw failure }
    case .postgres(let lane): try await lane.pool.shutdownAsync()
    }
  }

  /// `body` on a connection of `lane`, after waiting in line at its gate; every error leaves
  /// as a `StorageError` where callers can act on it.
  private func run<Source: ConnectionPoolSource, T: Sendable>(
    _ lane: Lane<Source>, _ body: (Source.Connection) async throws -> T
  ) async throws -> T {
    do {
      return try await lane.gate.withPermit {
        let connection = try await lane.pool.requestConnection(logger: self.logger).get()
        // Back before the permit: the next holder's request then finds it idle.
        defer { lane.pool.releaseConnection(connection, logger: self.logger) }
        return try await body(connection)
      }
    } catch {
      let mapped = Self.mapError(error)
      if case .busy(let why, let retryAfter) = mapped as? StorageError {
        self.contention.warn(
          "database busy; call refused with RESOURCE_EXHAUSTED", cause: Self.cause(of: error),
          metadata: [
            "reason": .string(why), "retry_after_ms": .stringConvertible(retryAfter.retryMilliseconds),
            "database": .string(self.dialect.rawValue),
          ])
      }
      throw mapped
    }
  }

  /// A short, stable name for what was contended (the throttling key of the log line).
  private static func cause(of error: any Error) -> String {
    if let refusal = error as? BoundedGate.Refusal { return "\(refusal.gate)_\(refusal.reason.rawValue)" }
    if error is SQLiteError { return "sqlite_lock_wait" }
    if let e = error as? PSQLError, let state = e.serverInfo?[.sqlState] { return "postgres_\(state)" }
    return "storage"
  }

  /// Turns driver errors callers act on into `StorageError`.
  public static func mapError(_ error: any Error) -> any Error {
    if error is StorageError { return error }
    if let refusal = error as? BoundedGate.Refusal {
      return StorageError.busy(refusal.description, retryAfter: refusal.retryAfter)
    }
    if let e = error as? SQLiteError {
      switch e.reason {
      case .constraintUniqueFailed, .constraintPrimaryKeyFailed: return StorageError.uniqueViolation
      // Another process held the lock for all of busy_timeout (the writer gate rules out
      // this one).
      case .busy, .busyTimeout, .busyInRecovery, .busyInSnapshot:
        return StorageError.busy("SQLite lock held elsewhere past busy_timeout", retryAfter: .seconds(1))
      default: return error
      }
    }
    if let e = error as? PSQLError, e.code == .server, let state = e.serverInfo?[.sqlState] {
      switch state {
      case "23505": return StorageError.uniqueViolation
      // lock_not_available (lock_timeout) and too_many_connections: load, not an outage.
      case "55P03", "53300": return StorageError.busy("PostgreSQL \(state)", retryAfter: .seconds(1))
      default: return error
      }
    }
    if let e = error as? PSQLError, [.connectionError, .serverClosedConnection, .clientClosedConnection, .poolClosed].contains(e.code) {
      return StorageError.unavailable("\(e.code)")
    }
    // Behind a gate the pool itself never queues: its timeout means a connection could not be
    // opened in time, which is an unreachable database.
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
  /// Inside a transaction: what runs once it has committed (nil: no transaction).
  let commitHooks: CommitHooks?
  /// SQLite: the file, which keys in-process change notifications (`ChangeNotifier`).
  let localKey: String?

  init(sql: any SQLDatabase, dialect: SQLDialectKind, commitHooks: CommitHooks?, localKey: String? = nil) {
    self.sql = sql
    self.dialect = dialect
    self.commitHooks = commitHooks
    self.localKey = localKey
  }

  /// Runs `action` once this unit of work's transaction has committed, and never if it
  /// rolls back (outside a transaction: at once, since every statement commits by itself).
  /// For effects other processes or tasks must not see before the data: in-process change
  /// notifications, cache invalidation.
  public func afterCommit(_ action: @escaping @Sendable () -> Void) {
    if let hooks = self.commitHooks { hooks.add(action) } else { action() }
  }

  /// Units of work come from `Database`; this is for wrapping one (a test counting the
  /// queries a repository runs wraps `sql` and keeps the dialect).
  public init(sql: any SQLDatabase, dialect: SQLDialectKind) {
    self.sql = sql
    self.dialect = dialect
    self.commitHooks = nil
    self.localKey = nil
  }

  /// The same unit of work (transaction, after-commit actions) on a wrapped `sql`.
  public func wrapping(_ sql: any SQLDatabase) -> UnitOfWork {
    UnitOfWork(sql: sql, dialect: self.dialect, commitHooks: self.commitHooks, localKey: self.localKey)
  }

  /// Runs a write and maps a unique-constraint violation to `StorageError.uniqueViolation`.
  public func write(_ query: SQLQueryString) async throws {
    do {
      try await self.sql.raw(query).run()
    } catch {
      throw Database.mapError(error)
    }
  }
}

/// Actions queued by `UnitOfWork.afterCommit`, run in order after COMMIT.
final class CommitHooks: Sendable {
  private let actions = Mutex<[@Sendable () -> Void]>([])

  func add(_ action: @escaping @Sendable () -> Void) { self.actions.withLock { $0.append(action) } }

  func run() {
    for action in self.actions.withLock({ actions in
      defer { actions = [] }
      return actions
    }) { action() }
  }
}

/// `transaction` called inside a transaction on the same database (a programming error: the
/// caller gets INTERNAL, the log says this).
public struct NestedTransactionError: Error, CustomStringConvertible {
  public var description: String { "a transaction was started inside a transaction of the same database; pass the UnitOfWork instead" }
}

/// A gate and the connections behind it.
// @unchecked: AsyncKit's pool is a class without a Sendable conformance, but its API is
// thread-safe by design: every method hops to the pool's event loop (see AsyncKit's
// EventLoopGroupConnectionPool docs), and we never touch its state directly.
struct Lane<Source: ConnectionPoolSource>: @unchecked Sendable {
  let gate: BoundedGate
  let pool: EventLoopGroupConnectionPool<Source>
}

/// SQLite connections with the settings every service wants, applied per connection.
struct TunedSQLiteSource: ConnectionPoolSource {
  let base: SQLiteConnectionSource
  /// Readers refuse writes (`query_only`): a write on one would contend with the writer.
  let readOnly: Bool

  func makeConnection(logger: Logger, on eventLoop: any EventLoop) -> EventLoopFuture<SQLiteConnection> {
    self.base.makeConnection(logger: logger, on: eventLoop).flatMap { connection in
      // busy_timeout replaces sqlite-nio's spin-forever busy handler with a bounded wait; in
      // this process only the writer can hold the lock, so it only waits for other processes.
      connection.query("PRAGMA busy_timeout = 5000")
        .flatMap { _ in connection.query("PRAGMA journal_mode = WAL") }
        .flatMap { _ in connection.query("PRAGMA synchronous = NORMAL") }
        .flatMap { _ in self.readOnly ? connection.query("PRAGMA query_only = ON").map { _ in () } : eventLoop.makeSucceededVoidFuture() }
        .map { _ in connection }
        .flatMapError { error in connection.close().flatMapThrowing { throw error } }
    }
  }
}
