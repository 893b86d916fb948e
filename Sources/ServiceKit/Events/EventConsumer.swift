import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceLifecycle
import Storage
import Synchronization

/// Consumes another service's event feed (docs/services.md, "Events"). Run it (it is a
/// lifecycle `Service`, e.g. in `ModuleParts.eventConsumers`).
///
/// - **Durable**: one replica of the group consumes (a `ConsumerLease`); each event's effect
///   commits in one unit of work with the group's offset (compare-and-set) and the key's
///   version, so an effect happens once although delivery is at least once, and an older
///   version of a key than the one applied has no effect. A failing event is retried with
///   backoff and then parked as a dead letter; the feed goes on. An operator's retry
///   request (`quizwire events dlq retry`) is replayed by the running consumer.
///   After OUT_OF_RANGE (the producer purged what the group had not read, or lost its data)
///   the consumer subscribes from the head, runs the handler's `resync` (the producer's
///   current-state RPC) and continues from there.
/// - **Broadcast**: every replica consumes from the head with no stored offset; every
///   (re)connection first calls `reset` (drop whatever is cached), then applies events.
public final class EventConsumer: Service, Sendable {
  /// The durable mode's handler: effects run in the consumer's unit of work.
  public struct Durable: Sendable {
    public var group: String
    public var database: Database
    public var apply: @Sendable (EventEnvelope, UnitOfWork) async throws -> Void
    /// Rebuilds what the feed would have told from the producer's current state.
    public var resync: @Sendable () async throws -> Void

    public init(
      group: String, database: Database, apply: @escaping @Sendable (EventEnvelope, UnitOfWork) async throws -> Void,
      resync: @escaping @Sendable () async throws -> Void
    ) {
      self.group = group
      self.database = database
      self.apply = apply
      self.resync = resync
    }
  }

  /// The broadcast mode's handler.
  public struct Broadcast: Sendable {
    public var reset: @Sendable () async -> Void
    public var apply: @Sendable (EventEnvelope) async -> Void
    public init(reset: @escaping @Sendable () async -> Void, apply: @escaping @Sendable (EventEnvelope) async -> Void) {
      self.reset = reset
      self.apply = apply
    }
  }

  public enum Mode: Sendable {
    case durable(Durable)
    case broadcast(Broadcast)
  }

  public struct Config: Sendable {
    /// Per event: tries before it is parked.
    public var retry = RetrySchedule(initial: .milliseconds(100), maximum: .seconds(5), attempts: 5)
    /// Between subscriptions after a failure.
    public var reconnect = RetrySchedule(initial: .milliseconds(200), maximum: .seconds(5), attempts: .max)
    /// How often the applied offset is acknowledged to the producer (retention).
    public var acknowledgeInterval: Duration = .seconds(5)
    /// How often requested dead-letter replays are looked for.
    public var replayInterval: Duration = .seconds(1)
    /// After start, how long a producer that isn't ready is expected rather than a fault:
    /// services of a suite start together and a producer may come up after its consumers
    /// (quiz follows scoring, which calls quiz) — not listening yet (UNAVAILABLE), or
    /// listening before it has the auth service's signing keys (UNAUTHENTICATED). Until the
    /// first subscription opens, and within this, the retries log one info line, not a
    /// warning each; later failures warn (a wrong target or a missing grant included).
    public var startupGrace: Duration = .seconds(30)
    public var lease = ConsumerLease.Timing()
    public init() {}
  }

  /// What the consumer did, for /metrics and tests.
  public struct Statistics: Sendable, Hashable {
    /// The last offset applied (durable) or seen (broadcast).
    public var offset: Int64 = 0
    public var head: Int64 = 0
    /// How far behind the producer's head, in events' offsets and in seconds (the age of
    /// the next event to apply; 0 when caught up).
    public var lagOffsets: Int64 = 0
    public var lagSeconds: Double = 0
    public var applied = 0
    /// Events without effect: an equal or newer version of their key was applied already.
    public var superseded = 0
    public var parked = 0
    public var replayed = 0
    public var connections = 0
    public var resyncs = 0
    public var resets = 0
    public var holdsLease = false
  }

  public let feed: any EventFeedClient
  public let mode: Mode
  let config: Config
  let logger: Logger
  let stats = Mutex(Statistics())

  public init(feed: any EventFeedClient, mode: Mode, config: Config = Config(), logger: Logger) {
    self.feed = feed
    self.mode = mode
    self.config = config
    var logger = logger
    logger[metadataKey: "feed"] = .string(feed.feed)
    if case .durable(let durable) = mode { logger[metadataKey: "consumer_group"] = .string(durable.group) }
    self.logger = logger
  }

  public var statistics: Statistics { self.stats.withLock { $0 } }

  /// "feed" or "feed/group" for metric labels.
  public var name: String {
    switch self.mode {
    case .durable(let durable): "\(self.feed.feed)/\(durable.group)"
    case .broadcast: self.feed.feed
    }
  }

  public func run() async throws {
    do {
      try await cancelWhenGracefulShutdown {
        switch self.mode {
        case .durable(let durable): try await self.runDurable(durable)
        case .broadcast(let broadcast): try await self.runBroadcast(broadcast)
        }
      }
    } catch is CancellationError {
      return
    }
  }

  /// Reconnects with backoff until cancelled. `session` returning or failing both count as a
  /// lost subscription; one that ran for a while resets the backoff.
  func reconnecting(_ session: @escaping @Sendable () async throws -> Void) async throws {
    var failures = 0
    let started = ContinuousClock.now
    var announcedWaiting = false
    while true {
      try Task.checkCancellation()
      let start = ContinuousClock.now
      do {
        try await session()
      } catch is CancellationError {
        throw CancellationError()
      } catch let error as RPCError where error.code == .cancelled && Task.isCancelled {
        throw CancellationError()
      } catch {
        let metadata: Logger.Metadata = ["error": .string(Self.describe(error))]
        if self.isStartingUp(since: started, error: error) {
          if !announcedWaiting {
            self.logger.info("event feed not reachable yet; retrying until the producer is ready", metadata: metadata)
          }
          announcedWaiting = true
        } else {
          self.logger.warning("event feed subscription ended; reconnecting", metadata: metadata)
        }
      }
      try Task.checkCancellation()
      failures = ContinuousClock.now - start > .seconds(10) ? 1 : failures + 1
      try await Task.sleep(for: self.config.reconnect.delay(afterFailure: failures))
    }
  }

  private func runBroadcast(_ handler: Broadcast) async throws {
    try await self.reconnecting {
      var request = Events_V1_SubscribeRequest()
      request.topic = self.feed.topic
      request.fromHead = true
      do {
        try await self.feed.subscribe(request) { messages in
          var first = true
          for try await message in messages {
            if first {
              first = false
              self.stats.withLock {
                $0.connections += 1
                $0.resets += 1
              }
              await handler.reset()
            }
            for event in message.events.map(EventFeedService.envelope(from:)) { await handler.apply(event) }
            self.observe(head: message.headOffset, applied: message.events.last?.offset, age: nil)
          }
        }
      } catch {
        // Whatever arrived while deaf is unknown: drop the cache now, not only on reconnect.
        await handler.reset()
        throw error
      }
      await handler.reset()
    }
  }

  /// Whether `error` is the producer not being ready yet at start: UNAVAILABLE or
  /// UNAUTHENTICATED, no subscription ever opened, within `startupGrace`.
  private func isStartingUp(since started: ContinuousClock.Instant, error: any Error) -> Bool {
    guard let rpc = error as? RPCError, rpc.code == .unavailable || rpc.code == .unauthenticated else { return false }
    return self.statistics.connections == 0 && ContinuousClock.now - started < self.config.startupGrace
  }

  /// Records the position after a message or an event.
  func observe(head: Int64, applied offset: Int64?, age: Double?) {
    self.stats.withLock { stats in
      stats.head = max(stats.head, head)
      if let offset { stats.offset = offset }
      stats.lagOffsets = max(0, stats.head - stats.offset)
      stats.lagSeconds = stats.lagOffsets == 0 ? 0 : (age ?? stats.lagSeconds)
    }
  }

  static func describe(_ error: any Error) -> String {
    if let rpc = error as? RPCError { return "\(rpc.code): \(rpc.message)" }
    return String(describing: error)
  }

  static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
