import Foundation
import Logging
import PostgresKit
import PostgresNIO
import SQLKit
import Synchronization

/// What a subscriber receives.
public enum ChangeNotification: Sendable, Hashable {
  /// A payload posted with `notify` by a transaction that committed.
  case payload(String)
  /// Notifications may have been missed (the LISTEN connection was lost, or this subscriber
  /// fell more than `bufferLimit` behind): whatever was derived from earlier ones — a cache —
  /// must be dropped. Sent when the loss is noticed and again once listening resumed, so
  /// what was cached while deaf is dropped too.
  case reset
}

/// Change notifications between the replicas of a service, posted inside the writing unit
/// of work and delivered only if it commits:
/// - PostgreSQL: `SELECT pg_notify(channel, payload)` in the transaction (PostgreSQL sends
///   it at COMMIT, drops it on ROLLBACK) and one dedicated `LISTEN` connection per notifier
///   (postgres-nio), outside the pool, reconnected with backoff when lost;
/// - SQLite (one process owns the file): an in-process broadcast, queued with
///   `UnitOfWork.afterCommit`, to every notifier of this process on the same file.
///
/// Run it (`run()`, e.g. under ServiceKit's `ChangeNotifierLifecycle`) for PostgreSQL
/// subscriptions to receive anything; `close()` ends every subscription.
public final class ChangeNotifier: Sendable {
  /// Per subscriber, notifications not yet consumed; beyond it the oldest are dropped and
  /// a `.reset` is queued instead.
  public static let bufferLimit = 4096
  /// PostgreSQL refuses payloads of 8000 bytes or more.
  public static let maxPayloadBytes = 7999

  /// Reconnection and liveness timing.
  public struct Timing: Sendable {
    /// The first reconnection delay, doubled per failure up to `maximumBackoff`.
    public var initialBackoff: Duration = .milliseconds(100)
    public var maximumBackoff: Duration = .seconds(5)
    /// How often the LISTEN connection proves it is alive with a round trip.
    public var heartbeatInterval: Duration = .seconds(10)
    /// A round trip slower than this ends the connection (reset, reconnect).
    public var heartbeatTimeout: Duration = .seconds(5)
    public init() {}
  }

  private let database: Database
  private let logger: Logger
  private let timing: Timing
  /// For SQLite: the file, so notifiers of one process on one file hear each other.
  private let localKey: String?
  private let state = Mutex(State())

  private struct Subscriber {
    var channel: String
    var continuation: AsyncStream<ChangeNotification>.Continuation
  }

  private struct State {
    var subscribers: [UInt64: Subscriber] = [:]
    /// Channels LISTENed on the current PostgreSQL connection.
    var listening: Set<String> = []
    /// Wakes the connection loop when a channel is subscribed for the first time.
    var wake: AsyncStream<String>.Continuation?
    var closed = false
  }

  public init(database: Database, logger: Logger, timing: Timing = Timing()) {
    self.database = database
    self.logger = logger
    self.timing = timing
    switch database.location {
    case .sqlite(let path): self.localKey = URL(fileURLWithPath: path).standardizedFileURL.path
    case .postgres: self.localKey = nil
    }
  }

  /// Posts `payload` on `channel` as part of `uow`: delivered to every subscriber (this
  /// process's included) once `uow` commits, never if it rolls back.
  public func notify(channel: String, payload: String, in uow: UnitOfWork) async throws {
    try Self.check(channel: channel)
    guard payload.utf8.count <= Self.maxPayloadBytes else { throw ChangeNotifierError.payloadTooLarge(payload.utf8.count) }
    if let key = self.localKey {
      uow.afterCommit { LocalChannels.deliver(key: key, channel: channel, .payload(payload)) }
    } else {
      try await uow.sql.raw("SELECT pg_notify(\(bind: channel), \(bind: payload)) AS sent").run()
    }
  }

  /// Posts `payload` on `channel` as part of `uow` without a notifier at hand (producers
  /// that only post, e.g. `Outbox.append`): the same delivery as `notify(channel:payload:in:)`.
  public static func post(channel: String, payload: String, in uow: UnitOfWork) async throws {
    try Self.check(channel: channel)
    guard payload.utf8.count <= Self.maxPayloadBytes else { throw ChangeNotifierError.payloadTooLarge(payload.utf8.count) }
    if uow.dialect == .sqlite {
      guard let key = uow.localKey else { return }
      uow.afterCommit { LocalChannels.deliver(key: key, channel: channel, .payload(payload)) }
    } else {
      try await uow.sql.raw("SELECT pg_notify(\(bind: channel), \(bind: payload)) AS sent").run()
    }
  }

  /// Notifications posted on `channel` from now on. On PostgreSQL they arrive once the
  /// LISTEN is in place (`waitUntilListening`). The stream ends with `close()`; dropping
  /// it unsubscribes.
  public func subscribe(channel: String) throws -> AsyncStream<ChangeNotification> {
    try Self.check(channel: channel)
    let (stream, continuation) = AsyncStream.makeStream(of: ChangeNotification.self, bufferingPolicy: .bufferingNewest(Self.bufferLimit))
    let id = LocalChannels.nextID.add(1, ordering: .relaxed).oldValue
    let (accepted, wake) = self.state.withLock { state -> (Bool, AsyncStream<String>.Continuation?) in
      guard !state.closed else { return (false, nil) }
      let isNew = !state.subscribers.values.contains { $0.channel == channel }
      state.subscribers[id] = Subscriber(channel: channel, continuation: continuation)
      return (true, isNew ? state.wake : nil)
    }
    guard accepted else {
      continuation.finish()
      return stream
    }
    if let key = self.localKey { LocalChannels.add(key: key, channel: channel, id: id, continuation) }
    wake?.yield(channel)
    continuation.onTermination = { [weak self] _ in
      self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
      if let key = self?.localKey { LocalChannels.remove(key: key, id: id) }
    }
    return stream
  }

  /// Whether notifications on `channel` are being received (always on SQLite).
  public func isListening(_ channel: String) -> Bool {
    self.localKey != nil || self.state.withLock { $0.listening.contains(channel) }
  }

  /// Returns once `channel` is LISTENed (at once on SQLite), or after `timeout`; false
  /// then. For start-up ordering and tests.
  public func waitUntilListening(_ channel: String, timeout: Duration = .seconds(10)) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !self.isListening(channel) {
      guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(10))) != nil else { return false }
    }
    return true
  }

  /// Ends every subscription; later ones end at once.
  public func close() {
    let subscribers = self.state.withLock { state in
      state.closed = true
      state.wake?.finish()
      defer { state.subscribers = [:] }
      return state.subscribers
    }
    for (id, subscriber) in subscribers {
      if let key = self.localKey { LocalChannels.remove(key: key, id: id) }
      subscriber.continuation.finish()
    }
  }

  /// Keeps the LISTEN connection (PostgreSQL) until cancelled or closed, reconnecting with
  /// exponential backoff; each loss sends `.reset` to every subscriber. On SQLite it only
  /// waits. Ends every subscription when it returns.
  public func run() async {
    defer { self.close() }
    guard case .postgres(let url, _) = self.database.location else {
      while !Task.isCancelled, !self.state.withLock({ $0.closed }) { try? await Task.sleep(for: .seconds(1)) }
      return
    }
    let configuration: PostgresConnection.Configuration
    do {
      configuration = try SQLPostgresConfiguration(url: url).coreConfiguration
    } catch {
      self.logger.error("change notifications off: invalid PostgreSQL URL")
      return
    }
    var failures = 0
    var connections = 0
    while !Task.isCancelled, !self.state.withLock({ $0.closed }) {
      do {
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: self.logger)
        connections += 1
        failures = 0
        await self.listen(on: connection, resumed: connections > 1)
        try? await connection.close()
      } catch {
        self.logger.warning("change notifications: cannot connect", metadata: ["error": "\(error)"])
      }
      guard !Task.isCancelled, !self.state.withLock({ $0.closed }) else { break }
      self.broadcast(.reset)
      if connections > 0 { self.logger.warning("change notifications: LISTEN connection lost; subscribers reset, reconnecting") }
      failures += 1
      let delay = min(self.timing.maximumBackoff, self.timing.initialBackoff * (1 << min(failures - 1, 16)))
      try? await Task.sleep(for: delay)
    }
  }

  /// LISTENs on every subscribed channel, and on new ones as they come, until the
  /// connection fails or the task is cancelled.
  private func listen(on connection: PostgresConnection, resumed: Bool) async {
    let (wakes, wake) = AsyncStream.makeStream(of: String.self)
    let channels = self.state.withLock { state -> Set<String> in
      state.wake = wake
      return Set(state.subscribers.values.map(\.channel))
    }
    await withTaskGroup(of: Void.self) { group in
      var started = Set<String>()
      for channel in channels {
        started.insert(channel)
        group.addTask { await self.listen(channel, on: connection, resumed: resumed, stop: wake) }
      }
      group.addTask {
        // A connection closed by the server (or the network) ends the LISTENs' sequences;
        // this notices a close even while no channel is listened on.
        try? await connection.closeFuture.get()
        wake.finish()
      }
      group.addTask {
        // A half-open connection (a NAT or firewall that dropped its state, a partitioned
        // server) closes nothing and delivers nothing: a round trip every interval proves
        // the connection alive, or ends it.
        while !Task.isCancelled {
          try? await Task.sleep(for: self.timing.heartbeatInterval)
          guard !Task.isCancelled else { return }
          guard await Self.roundTrip(on: connection, timeout: self.timing.heartbeatTimeout, logger: self.logger) else {
            self.logger.warning("change notifications: LISTEN connection unresponsive; reconnecting")
            wake.finish()
            return
          }
        }
      }
      for await channel in wakes where !started.contains(channel) {
        started.insert(channel)
        group.addTask { await self.listen(channel, on: connection, resumed: resumed, stop: wake) }
      }
      group.cancelAll()
      try? await connection.close()
    }
    self.state.withLock { state in
      state.listening = []
      if !state.closed { state.wake = nil }
    }
  }

  /// Whether `SELECT 1` answers within `timeout`. A late answer closes the connection, which
  /// fails the query (postgres-nio does not abandon a query on cancellation).
  static func roundTrip(on connection: PostgresConnection, timeout: Duration, logger: Logger) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        do {
          for try await _ in try await connection.query("SELECT 1", logger: logger) {}
          return true
        } catch {
          return false
        }
      }
      group.addTask {
        try? await Task.sleep(for: timeout)
        if !Task.isCancelled { try? await connection.close() }
        return false
      }
      let answered = await group.next() ?? false
      group.cancelAll()
      return answered
    }
  }

  private func listen(_ channel: String, on connection: PostgresConnection, resumed: Bool, stop: AsyncStream<String>.Continuation) async {
    do {
      try await connection.listen(on: channel) { notifications in
        self.state.withLock { _ = $0.listening.insert(channel) }
        // Whatever was posted between the loss and now went unheard.
        if resumed { self.deliver(.reset, on: channel) }
        for try await notification in notifications { self.deliver(.payload(notification.payload), on: channel) }
      }
    } catch {
      if !Task.isCancelled { self.logger.debug("change notifications: LISTEN ended", metadata: ["channel": "\(channel)", "error": "\(error)"]) }
    }
    // Any LISTEN ending means this connection is done for: start over on a new one.
    stop.finish()
  }

  private func deliver(_ notification: ChangeNotification, on channel: String) {
    let targets = self.state.withLock { $0.subscribers.values.filter { $0.channel == channel }.map(\.continuation) }
    for continuation in targets { Self.yield(notification, to: continuation) }
  }

  private func broadcast(_ notification: ChangeNotification) {
    for continuation in self.state.withLock({ $0.subscribers.values.map(\.continuation) }) { Self.yield(notification, to: continuation) }
  }

  /// Yields; when the buffer was full the oldest entry was dropped, so a `.reset` follows
  /// to say so (it too displaces an older entry, and stays in the buffer).
  static func yield(_ notification: ChangeNotification, to continuation: AsyncStream<ChangeNotification>.Continuation) {
    if case .dropped = continuation.yield(notification), notification != .reset { continuation.yield(.reset) }
  }

  /// Channel names go into `LISTEN "<name>"` (postgres-nio quotes but does not escape):
  /// lower-case letters, digits, `_` and `.`, at most 63.
  static func check(channel: String) throws {
    let valid =
      !channel.isEmpty && channel.utf8.count <= 63
      && channel.utf8.allSatisfy { b in
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_")
          || b == UInt8(ascii: ".")
      }
    guard valid else { throw ChangeNotifierError.invalidChannel(channel) }
  }
}

public enum ChangeNotifierError: Error, Sendable, Hashable, CustomStringConvertible {
  case invalidChannel(String)
  case payloadTooLarge(Int)

  public var description: String {
    switch self {
    case .invalidChannel(let name): "invalid notification channel \"\(name)\" (a-z, 0-9, _ and ., at most 63)"
    case .payloadTooLarge(let size): "notification payload of \(size) bytes (at most \(ChangeNotifier.maxPayloadBytes))"
    }
  }
}

/// SQLite's notifications: subscribers of every notifier in the process, by database file.
enum LocalChannels {
  static let nextID = Atomic<UInt64>(1)
  private static let subscribers = Mutex<[String: [UInt64: (channel: String, continuation: AsyncStream<ChangeNotification>.Continuation)]]>([:])

  static func add(key: String, channel: String, id: UInt64, _ continuation: AsyncStream<ChangeNotification>.Continuation) {
    self.subscribers.withLock { $0[key, default: [:]][id] = (channel, continuation) }
  }

  static func remove(key: String, id: UInt64) {
    self.subscribers.withLock { all in
      all[key]?.removeValue(forKey: id)
      if all[key]?.isEmpty == true { all.removeValue(forKey: key) }
    }
  }

  static func deliver(key: String, channel: String, _ notification: ChangeNotification) {
    let targets = self.subscribers.withLock { $0[key]?.values.filter { $0.channel == channel }.map(\.continuation) ?? [] }
    for continuation in targets { ChangeNotifier.yield(notification, to: continuation) }
  }
}
