import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// A GRPCCore `ClientTransport` over the Quizwire framed wire.
///
/// It keeps one connection per replica address, reconnecting with exponential backoff and
/// jitter, and spreads calls with round robin or least requests. A replica that sends GOAWAY
/// stops getting new calls at once; its in-flight calls finish.
public final class FramedClientTransport: ClientTransport, Sendable {
  public typealias Bytes = FramedBytes

  public struct Config: Sendable {
    public var targets: [FramedTarget]
    public var loadBalancing: LoadBalancingPolicy = .roundRobin
    public var connection = FramedConnectionConfig()
    public var tls: TLSConfiguration?
    /// Hostname to verify and send as SNI; defaults to the target's host.
    public var serverHostname: String?
    public var backoff = Backoff()
    public var connectTimeout: TimeAmount = .seconds(5)
    /// Default request compression when the call doesn't choose one.
    public var compression: MessageEncoding = .identity
    /// Per-method configuration (timeouts, retry policies) as GRPCCore defines it.
    public var serviceConfig = ServiceConfig()
    /// Consulted before each call goes to a replica and told how it went (circuit breakers).
    public var replicaGate: (any ReplicaGate)?
    /// Connections per replica at most. The first is kept open; the others are opened when
    /// every connection to the replica carries the peer's MAX_CONCURRENT_STREAMS, and closed
    /// after `extraConnectionIdleTime` without calls.
    public var maxConnectionsPerReplica = 16
    public var extraConnectionIdleTime: Duration = .seconds(30)

    public init(targets: [FramedTarget]) { self.targets = targets }
  }

  /// The deadline of calls started in this task (`$callDeadline.withValue(…)`), enforced by
  /// the transport itself: a wait for a free stream slot gives up at it, the server gets it
  /// as the call's `timeout_us` (the sooner of it and a `grpc-timeout` in the metadata), and
  /// one timer on the connection's loop fails the call with DEADLINE_EXCEEDED (and resets its
  /// stream) if no status came by then.
  ///
  /// Use it instead of `CallOptions.timeout`, which makes GRPCCore run each call in a task
  /// group with a sleeping child task: ~15 % of the gateway's CPU for a small unary call.
  @TaskLocal public static var callDeadline: ContinuousClock.Instant?

  public let config: Config
  public let retryThrottle: RetryThrottle?
  private let group: any EventLoopGroup
  private let sslContext: NIOSSLContext?
  let pool: ConnectionPool
  // Keyed by "service/method": a MethodDescriptor's equality includes its RPC type, which
  // a service config doesn't name.
  private let methodConfigs: [String: MethodConfig]
  private let serviceConfigs: [String: MethodConfig]
  private let defaultMethodConfig: MethodConfig?

  public init(config: Config, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
    guard !config.targets.isEmpty else { throw FramedTransportError.noAddresses }
    self.config = config
    self.group = eventLoopGroup
    self.sslContext = try config.tls.map { try NIOSSLContext(configuration: $0) }
    self.retryThrottle = config.serviceConfig.retryThrottling.map { RetryThrottle(policy: $0) }
    self.pool = ConnectionPool(
      count: config.targets.count, policy: config.loadBalancing, gate: config.replicaGate,
      maxConnectionsPerReplica: config.maxConnectionsPerReplica)
    // gRPC service-config precedence: exact method, then whole service, then the default.
    var configs: [String: MethodConfig] = [:]
    var services: [String: MethodConfig] = [:]
    var fallback: MethodConfig?
    for mc in config.serviceConfig.methodConfig {
      for name in mc.names {
        if name.service.isEmpty {
          fallback = mc
        } else if name.method.isEmpty {
          services[name.service] = mc
        } else {
          configs[name.service + "/" + name.method] = mc
        }
      }
    }
    self.methodConfigs = configs
    self.serviceConfigs = services
    self.defaultMethodConfig = fallback
  }

  public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
    self.methodConfigs[descriptor.fullyQualifiedMethod] ?? self.serviceConfigs[descriptor.service.fullyQualifiedService] ?? self.defaultMethodConfig
  }

  /// Keeps a connection to every replica until `beginGracefulShutdown()`.
  public func connect() async throws {
    await withDiscardingTaskGroup { group in
      for (index, target) in self.config.targets.enumerated() {
        group.addTask { await self.maintain(index: index, target: target) }
        group.addTask { await self.growWhenAsked(index: index, target: target) }
      }
    }
    // Cancelled rather than shut down: calls waiting for a connection must not wait forever.
    for connection in self.pool.shutDown() { connection.closeGracefully() }
  }

  private func maintain(index: Int, target: FramedTarget) async {
    var backoff = self.config.backoff
    while !self.pool.isShutDown && !Task.isCancelled {
      self.pool.update(index) { $0 = .connecting }
      do {
        let connection = try await ClientConnection.connect(
          to: target, config: self.config.connection, tls: self.sslContext, serverHostname: self.config.serverHostname,
          connectTimeout: self.config.connectTimeout, group: self.group)
        backoff.reset()
        self.pool.update(index) { $0 = .ready(connection) }
        if self.pool.isShutDown { connection.closeGracefully() }
        // Stop picking it the moment it drains; reconnect when it closes.
        await withTaskCancellationHandler {
          try? await connection.closeFuture.get()
        } onCancel: {
          connection.closeGracefully()
        }
        self.pool.update(index) { $0 = .idle }
      } catch {
        self.pool.update(index) { $0 = .transientFailure("\(target): \(error)") }
        let delay = backoff.next()
        do {
          try await self.pool.sleepUnlessShutDown(for: delay)
        } catch {
          return
        }
      }
    }
  }

  /// Opens an extra connection to a replica each time the pool finds all of its connections
  /// full, and keeps it until it has been idle for `extraConnectionIdleTime`.
  private func growWhenAsked(index: Int, target: FramedTarget) async {
    await withDiscardingTaskGroup { group in
      for await _ in self.pool.demands[index] {
        let connection = try? await ClientConnection.connect(
          to: target, config: self.config.connection, tls: self.sslContext, serverHostname: self.config.serverHostname,
          connectTimeout: self.config.connectTimeout, group: self.group)
        self.pool.grew(index, connection)
        guard let connection else { continue }
        if self.pool.isShutDown { connection.closeGracefully() }
        group.addTask { await self.hold(extra: connection, replica: index) }
      }
    }
  }

  private func hold(extra connection: ClientConnection, replica: Int) async {
    var idleSince = ContinuousClock.now
    while connection.status.isUsable && !Task.isCancelled {
      if connection.status.activeCalls > 0 {
        idleSince = ContinuousClock.now
      } else if ContinuousClock.now - idleSince >= self.config.extraConnectionIdleTime {
        break
      }
      try? await Task.sleep(for: min(.seconds(1), self.config.extraConnectionIdleTime))
    }
    self.pool.removeExtra(replica, connection)
    connection.closeGracefully()
    try? await connection.closeFuture.get()
  }

  public func beginGracefulShutdown() {
    for connection in self.pool.shutDown() { connection.closeGracefully() }
  }

  public func withStream<T: Sendable>(
    descriptor: MethodDescriptor,
    options: CallOptions,
    _ closure: (RPCStream<Inbound, Outbound>, ClientContext) async throws -> T
  ) async throws -> T {
    let connection: ClientConnection
    let replica: Int
    let deadline = Self.callDeadline
    do {
      (connection, replica) = try await self.pool.pick(waitForReady: options.waitForReady ?? false, deadline: deadline)
    } catch let error as RPCError {
      // No replica to call: answered as a stream that fails at once (trailers-only), not by
      // throwing. GRPCCore 2.4.3's retry executor, when `withStream` throws, returns without
      // cancelling its deadline task and so holds every such call until its deadline; a
      // failed response goes through its normal path instead, and returns at once: it
      // carries retry pushback "stop" (`grpc-retry-pushback-ms: -1`), since every replica is
      // down or its breaker open and a retry a few milliseconds later would only add its
      // backoff to the caller's wait.
      var refused = error
      refused.metadata.replaceOrAddString("-1", forKey: "grpc-retry-pushback-ms")
      return try await closure(Self.failedStream(descriptor, refused), ClientContext(descriptor: descriptor, remotePeer: "", localPeer: ""))
    }
    let peer = connection.status.peerSettings
    let encoding = options.compression.flatMap(MessageEncoding.init(grpc:)) ?? self.config.compression
    let usable = peer.acceptEncodings.contains(encoding.bit) ? encoding : .identity
    let stream = FramedStream<RPCResponsePart<FramedBytes>>(
      connection: connection.commands,
      creditThreshold: min(16 * 1024, self.config.connection.settings.initialStreamWindow / 4),
      // A peer's huge window must not mean a huge queue here.
      writeLimit: min(max(64 * 1024, peer.initialStreamWindow), self.config.connection.maxQueuedBytes))
    let writer = ClientStreamWriter(
      stream: stream, descriptor: descriptor, encoding: usable, deadline: deadline,
      sender: MessageSender(
        peerMaxMessageSize: min(peer.maxMessageSize, options.maxRequestMessageBytes ?? .max),
        encoding: usable, compressionMinBytes: self.config.connection.compressionMinBytes))
    let rpc = RPCStream(
      descriptor: descriptor,
      inbound: RPCAsyncSequence(wrapping: FramedInbound(stream: stream)),
      outbound: RPCWriter.Closable(wrapping: writer))
    defer { self.callEnded(stream, on: connection, replica: replica) }
    return try await closure(rpc, ClientContext(descriptor: descriptor, remotePeer: connection.remote, localPeer: connection.local))
  }

  /// Once per call, when its caller is done with it.
  func callEnded(_ stream: FramedStream<RPCResponsePart<FramedBytes>>, on connection: ClientConnection, replica: Int) {
    // Leaving before the trailers arrived means the call was abandoned: tell the server.
    // The reset goes out before the slot is freed, so a call that takes the slot opens its
    // stream after the reset on the connection's loop, within the peer's limit.
    if !stream.isComplete { connection.commands.send(.reset(stream, .cancel)) }
    connection.status.callEnded()
    self.pool.callEnded()
    if let gate = self.config.replicaGate {
      // Only what says something about the replica counts: its status or a broken stream.
      // A call the caller abandoned (trailers never came) says nothing.
      if let code = stream.statusCode {
        gate.record(replica: replica, failed: ReplicaOutcome.isReplicaFailure(code))
      } else if let failure = stream.failure {
        gate.record(replica: replica, failed: ReplicaOutcome.isReplicaFailure(Status.Code(failure.code)))
      } else {
        gate.release(replica: replica)
      }
    }
  }
}

extension FramedClientTransport {
  /// A stream whose response is `error` as trailers-only and whose requests go nowhere.
  static func failedStream(_ descriptor: MethodDescriptor, _ error: RPCError) -> RPCStream<Inbound, Outbound> {
    let (inbound, continuation) = AsyncThrowingStream<RPCResponsePart<FramedBytes>, any Error>.makeStream()
    continuation.yield(.status(Status(code: Status.Code(error.code), message: error.message), error.metadata))
    continuation.finish()
    return RPCStream(
      descriptor: descriptor, inbound: RPCAsyncSequence(wrapping: inbound), outbound: RPCWriter.Closable(wrapping: DiscardingWriter()))
  }
}

/// Accepts and drops request parts (the outbound side of a stream that never opened).
struct DiscardingWriter: ClosableRPCWriterProtocol {
  func write(_ element: RPCRequestPart<FramedBytes>) async throws {}
  func write(contentsOf elements: some Sequence<RPCRequestPart<FramedBytes>>) async throws {}
  func finish() async {}
  func finish(throwing error: any Error) async {}
}

extension MessageEncoding {
  /// Maps GRPCCore's compression choice onto the wire's encodings.
  init?(grpc: CompressionAlgorithm) {
    switch grpc {
    case .gzip: self = .gzip
    case .deflate: self = .deflate
    case .none: self = .identity
    default: return nil
    }
  }
}

/// Decides which replica may take a call and learns how calls went — the hook for
/// per-replica circuit breakers (ServiceKit's `ReplicaBreakers`).
public protocol ReplicaGate: Sendable {
  /// Whether replica `index` (into `Config.targets`) may take this call. A `true` answer is
  /// followed by exactly one `record` or `release` for that replica.
  func admit(replica index: Int) -> Bool
  /// How an admitted call went.
  func record(replica index: Int, failed: Bool)
  /// An admitted call ended without an outcome that says anything about the replica.
  func release(replica index: Int)
  /// A call found replica `index` unreachable (its connection is failing) and was not sent:
  /// a failure of the replica all the same, so a replica that is down opens its breaker.
  func unreachable(replica index: Int)
}

package enum ReplicaOutcome {
  /// Codes that say the replica (not the request) is in trouble: it can't be reached or serve
  /// (UNAVAILABLE), it is too slow (DEADLINE_EXCEEDED), or its data is broken (DATA_LOSS) —
  /// Envoy's "gateway failures". Not INTERNAL or UNKNOWN: those are what a handler bug that
  /// some input triggers answers, and a client sending that input over and over would open
  /// every replica's breaker and switch the service off for everyone (the gateway's 16 KiB
  /// trailer bug did exactly that). A replica failing every call that way is for its
  /// readiness check to take out of rotation.
  package static func isReplicaFailure(_ code: Status.Code) -> Bool {
    [.unavailable, .deadlineExceeded, .dataLoss].contains(code)
  }
}
