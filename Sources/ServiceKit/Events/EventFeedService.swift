import GRPCCore
import Logging
import QuizwireProtos
import Storage
import Synchronization

/// `events.v1.EventFeed` over a service's outbox: replay from an offset, then live. The
/// stream is written batch by batch under the transport's flow control, so a consumer that
/// reads slowly holds at most one batch in this process; it lags, nothing piles up here.
/// Woken by the outbox's change notifications (LISTEN/NOTIFY on PostgreSQL, in-process on
/// SQLite) and, should one be missed, by a poll every `pollInterval`.
public final class EventFeedService: Events_V1_EventFeed.SimpleServiceProtocol {
  public struct Config: Sendable {
    /// Events read and sent per message.
    public var batchSize = 256
    /// A re-read when nothing woke the feed (a lost notification costs at most this).
    public var pollInterval: Duration = .seconds(5)
    public init() {}
  }

  private let database: Database
  private let topics: [String: EventTopic]
  private let notifier: ChangeNotifier
  private let config: Config
  private let logger: Logger
  private let counters = Mutex(Counters())
  /// Open subscriptions' wake signals: `close()` finishes them, which ends the streams.
  private let open = Mutex<(closed: Bool, next: UInt64, signals: [UInt64: AsyncStream<Void>.Continuation])>((false, 0, [:]))

  /// What the feed did, for /metrics and tests.
  public struct Counters: Sendable, Hashable {
    public var subscriptions = 0
    public var active = 0
    /// Events handed to the transport (written, or waiting for the reader's window).
    public var eventsSent = 0
  }

  public init(database: Database, topics: [EventTopic], notifier: ChangeNotifier, config: Config = Config(), logger: Logger) {
    self.database = database
    self.topics = Dictionary(topics.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    self.notifier = notifier
    self.config = config
    self.logger = logger
  }

  public var statistics: Counters { self.counters.withLock { $0 } }

  /// Ends every subscription (normally: the stream ends with OK) and refuses new ones with
  /// UNAVAILABLE: the host's drain calls it, so consumers move to another replica at once
  /// instead of holding the drain for its whole grace period.
  public func close() {
    let signals = self.open.withLock { open in
      open.closed = true
      defer { open.signals = [:] }
      return Array(open.signals.values)
    }
    for signal in signals { signal.finish() }
  }

  /// Only the suite's own services read feeds.
  public static var policies: [MethodDescriptor: AccessPolicy] {
    [Events_V1_EventFeed.Method.Subscribe.descriptor: .servicesOnly, Events_V1_EventFeed.Method.Acknowledge.descriptor: .servicesOnly]
  }

  public func subscribe(
    request: Events_V1_SubscribeRequest, response: RPCWriter<Events_V1_SubscribeResponse>, context: ServerContext
  ) async throws {
    let topic = try self.topic(named: request.topic)
    try Self.checkGroup(request.consumerGroup, required: false)
    guard request.afterOffset >= 0 else { throw RPCError(code: .invalidArgument, message: "after_offset must not be negative") }
    // Subscribed before the first read: an append committing in between still wakes us.
    let wakes = try self.notifier.subscribe(channel: Outbox.channel)
    let (head, horizon) = try await self.database.read { uow in
      (try await Outbox.head(in: uow), try await OutboxRetention.horizon(topic: topic.name, in: uow))
    }
    var offset = request.fromHead ? head : request.afterOffset
    if !request.fromHead {
      guard request.afterOffset <= head else {
        throw RPCError(code: .outOfRange, message: "after_offset \(request.afterOffset) is past the head \(head) of \(topic.name)")
      }
      guard request.afterOffset >= horizon else {
        throw RPCError(
          code: .outOfRange,
          message:
            "events of \(topic.name) up to offset \(horizon) were purged by retention; resync from \(topic.resync), then subscribe with from_head")
      }
      if !request.consumerGroup.isEmpty {
        try await self.database.transaction { uow in
          try await OutboxRetention.acknowledge(topic: topic.name, group: request.consumerGroup, offset: request.afterOffset, in: uow)
        }
      }
    }
    self.counters.withLock {
      $0.subscriptions += 1
      $0.active += 1
    }
    defer { self.counters.withLock { $0.active -= 1 } }
    var first = Events_V1_SubscribeResponse()
    first.headOffset = head
    try await response.write(first)

    // Wakes coalesce: however many commits happened, one re-read catches up with all.
    let (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    let id = try self.open.withLock { open -> UInt64 in
      guard !open.closed else { throw RPCError(code: .unavailable, message: "draining: subscribe to another replica") }
      defer { open.next += 1 }
      open.signals[open.next] = signal
      return open.next
    }
    defer { _ = self.open.withLock { $0.signals.removeValue(forKey: id) } }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        for await _ in wakes { signal.yield() }
        signal.finish()
      }
      group.addTask { [pollInterval = self.config.pollInterval] in
        while true {
          try await Task.sleep(for: pollInterval)
          signal.yield()
        }
      }
      defer { group.cancelAll() }
      offset = try await self.sendAvailable(topic: topic, after: offset, to: response)
      for await _ in signals {
        offset = try await self.sendAvailable(topic: topic, after: offset, to: response)
      }
    }
  }

  /// Sends every committed event of `topic` after `offset`, batch by batch; returns the last
  /// offset sent (or `offset`).
  private func sendAvailable(topic: EventTopic, after offset: Int64, to response: RPCWriter<Events_V1_SubscribeResponse>) async throws
    -> Int64
  {
    var offset = offset
    while true {
      try Task.checkCancellation()
      let (events, head) = try await self.database.read { uow in
        (
          try await Outbox.read(after: offset, types: topic.types, limit: self.config.batchSize, in: uow),
          try await Outbox.head(in: uow)
        )
      }
      guard let last = events.last else { return offset }
      var message = Events_V1_SubscribeResponse()
      message.headOffset = max(head, last.offset)
      message.events = events.map(Self.message(from:))
      self.counters.withLock { $0.eventsSent += events.count }
      try await response.write(message)
      offset = last.offset
      if events.count < self.config.batchSize { return offset }
    }
  }

  public func acknowledge(request: Events_V1_AcknowledgeRequest, context: ServerContext) async throws -> Events_V1_AcknowledgeResponse {
    let topic = try self.topic(named: request.topic)
    try Self.checkGroup(request.consumerGroup, required: true)
    guard request.offset >= 0 else { throw RPCError(code: .invalidArgument, message: "offset must not be negative") }
    let head = try await self.database.read { try await Outbox.head(in: $0) }
    guard request.offset <= head else {
      throw RPCError(code: .outOfRange, message: "offset \(request.offset) is past the head \(head) of \(topic.name)")
    }
    try await self.database.transaction { uow in
      try await OutboxRetention.acknowledge(topic: topic.name, group: request.consumerGroup, offset: request.offset, in: uow)
    }
    return Events_V1_AcknowledgeResponse()
  }

  private func topic(named name: String) throws -> EventTopic {
    guard let topic = self.topics[name] else {
      let known = self.topics.keys.sorted().joined(separator: ", ")
      throw RPCError(code: .notFound, message: "unknown topic \"\(name.prefix(100))\"; this service has: \(known.isEmpty ? "none" : known)")
    }
    return topic
  }

  static func checkGroup(_ group: String, required: Bool) throws {
    if group.isEmpty {
      guard !required else { throw RPCError(code: .invalidArgument, message: "consumer_group is required") }
      return
    }
    let valid =
      group.utf8.count <= 100
      && group.utf8.allSatisfy { b in
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
          || b == UInt8(ascii: ".") || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
      }
    guard valid else {
      throw RPCError(code: .invalidArgument, message: "consumer_group must be 1–100 characters of a-z, 0-9, '.', '-', '_'")
    }
  }

  static func message(from event: EventEnvelope) -> Events_V1_Event {
    var message = Events_V1_Event()
    message.offset = event.offset
    message.type = event.type
    message.key = event.key
    message.keyVersion = event.keyVersion
    message.payload = event.payload
    message.timeUnixMs = event.timeMs
    message.traceContext = event.traceContext ?? ""
    return message
  }

  static func envelope(from message: Events_V1_Event) -> EventEnvelope {
    EventEnvelope(
      offset: message.offset, type: message.type, key: message.key, keyVersion: message.keyVersion, payload: message.payload,
      timeMs: message.timeUnixMs, traceContext: message.traceContext.isEmpty ? nil : message.traceContext)
  }
}
