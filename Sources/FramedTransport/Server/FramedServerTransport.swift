import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A GRPCCore `ServerTransport` that speaks the Quizwire framed wire over TCP (optionally TLS).
///
/// Each accepted connection runs one `ServerConnectionHandler`; each call runs in its own task.
/// `beginGracefulShutdown()` stops accepting and drains every connection with the two-phase
/// GOAWAY; `listen` returns once all connections have closed.
public final class FramedServerTransport: ServerTransport, Sendable {
  public typealias Bytes = FramedBytes

  public struct Config: Sendable {
    public var host: String
    public var port: Int
    public var connection = FramedConnectionConfig()
    /// TLS for every connection; set `certificateVerification` and `trustRoots` for mutual TLS.
    public var tls: TLSConfiguration?
    /// Message encodings the server decodes.
    public var encodings: EncodingSet = .all
    /// Run each call's handler on its connection's event loop instead of the global pool. Much
    /// cheaper per message (no thread hops), but a handler that blocks or computes for long
    /// then stalls every connection on that loop: only for services that never do (bench echo).
    public var runHandlersOnEventLoop = false
    /// Connections held at once; more are closed as soon as they are accepted. nil: a share of
    /// the process's descriptor limit (`ConnectionLimiter.automaticLimit`).
    public var maxConnections: Int?

    public init(host: String = "127.0.0.1", port: Int = 0) {
      self.host = host
      self.port = port
      // A server keeps idle connections quiet; clients ping.
      self.connection.keepaliveInterval = nil
    }
  }

  private struct State {
    var serverChannel: (any Channel)?
    var connections: [ObjectIdentifier: (channel: any Channel, handler: NIOLoopBound<ServerConnectionHandler>)] = [:]
    var shuttingDown = false
    var listening = false
    var addressWaiters: [CheckedContinuation<SocketAddress, any Error>] = []
    var address: SocketAddress?
  }

  public let config: Config
  /// Open and refused connections; caps them at `config.maxConnections`.
  public let connections: ConnectionLimiter
  private let group: any EventLoopGroup
  private let state = NIOLockedValueBox(State())
  private let sslContext: NIOSSLContext?

  public init(config: Config, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
    self.config = config
    self.connections = ConnectionLimiter(limit: config.maxConnections)
    self.group = eventLoopGroup
    self.sslContext = try config.tls.map { try NIOSSLContext(configuration: $0) }
  }

  /// The bound address, once listening (port 0 resolves to the chosen port).
  public var listeningAddress: SocketAddress {
    get async throws {
      try await withCheckedThrowingContinuation { c in
        let ready: SocketAddress? = self.state.withLockedValue { s in
          if let a = s.address { return a }
          s.addressWaiters.append(c)
          return nil
        }
        if let ready { c.resume(returning: ready) }
      }
    }
  }

  public func listen(
    streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
  ) async throws {
    try self.state.withLockedValue { s in
      guard !s.listening else { throw FramedTransportError.alreadyListening }
      s.listening = true
    }
    let callbacks = ServerCallbacks(streamHandler: streamHandler, encodings: self.config.encodings, runOnEventLoop: self.config.runHandlersOnEventLoop)
    let config = self.config.connection
    let sslContext = self.sslContext
    let limiter = self.connections
    let bootstrap = ServerBootstrap(group: self.group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .serverChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try limiter.configure(serverChannel: channel) }
      }
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { [weak self] channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          if let sslContext { try sync.addHandler(FramedTLS.serverHandler(sslContext)) }
          let commands = ConnectionCommands(eventLoop: channel.eventLoop)
          let handler = ServerConnectionHandler(config: config, commands: commands, status: ConnectionStatus(), callbacks: callbacks)
          try sync.addHandler(FrameReader(settings: config.settings))
          try sync.addHandler(handler)
          self?.register(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        }
      }

    let serverChannel: any Channel
    do {
      serverChannel = try await bootstrap.bind(host: self.config.host, port: self.config.port).get()
    } catch {
      let waiters = self.state.withLockedValue { s in
        defer { s.addressWaiters = [] }
        return s.addressWaiters
      }
      for w in waiters { w.resume(throwing: error) }
      throw error
    }
    let (waiters, shutDownAlready) = self.state.withLockedValue { s in
      s.serverChannel = serverChannel
      s.address = serverChannel.localAddress
      defer { s.addressWaiters = [] }
      return (s.addressWaiters, s.shuttingDown)
    }
    for w in waiters { w.resume(returning: serverChannel.localAddress!) }
    if shutDownAlready { self.beginGracefulShutdown() }
    self.connections.listenerOpened()
    defer { self.connections.listenerClosed() }

    await withTaskCancellationHandler {
      try? await serverChannel.closeFuture.get()
      // Wait for drained connections to close.
      while let next = self.state.withLockedValue({ $0.connections.values.first?.channel }) {
        try? await next.closeFuture.get()
      }
    } onCancel: {
      self.closeNow()
    }
  }

  private func register(channel: any Channel, handler: NIOLoopBound<ServerConnectionHandler>) {
    let id = ObjectIdentifier(channel)
    let drainNow = self.state.withLockedValue { s -> Bool in
      s.connections[id] = (channel, handler)
      return s.shuttingDown
    }
    channel.closeFuture.whenComplete { [weak self] _ in
      _ = self?.state.withLockedValue { $0.connections.removeValue(forKey: id) }
    }
    if drainNow { channel.eventLoop.execute { handler.value.beginDrain() } }
  }

  /// Stream records held across all connections (protocol state plus live calls); 0 when
  /// idle — a leak of per-stream state (framing-anchors §9.3) shows up here.
  package func openStreamCount() async -> Int {
    let connections = self.state.withLockedValue { Array($0.connections.values) }
    var total = 0
    for c in connections {
      total += (try? await c.channel.eventLoop.submit { c.handler.value.machine.openStreamCount + c.handler.value.serverStreams.count }.get()) ?? 0
    }
    return total
  }

  /// Connections currently open.
  package var connectionCount: Int { self.state.withLockedValue { $0.connections.count } }

  public func beginGracefulShutdown() {
    let (server, connections) = self.state.withLockedValue { s in
      s.shuttingDown = true
      return (s.serverChannel, Array(s.connections.values))
    }
    server?.close(promise: nil)
    for c in connections {
      c.channel.eventLoop.execute { c.handler.value.beginDrain() }
    }
  }

  /// Hard stop (listen was cancelled): close every connection now.
  private func closeNow() {
    let (server, connections) = self.state.withLockedValue { s in
      s.shuttingDown = true
      return (s.serverChannel, Array(s.connections.values))
    }
    server?.close(promise: nil)
    for c in connections { c.channel.close(promise: nil) }
  }
}

/// One listener's connections: counts them, closes those beyond the limit as soon as they are
/// accepted (before any handler or buffer is set up for them), and keeps accepting from
/// spinning when the process is out of descriptors (see `AcceptGate`).
public final class ConnectionLimiter: Sendable {
  /// Descriptors left to everything else (admin port, database, files) by the automatic limit.
  public static let reservedDescriptors = 256
  /// The automatic limit never exceeds this (each connection costs memory too).
  public static let automaticCeiling = 10_000

  private struct Counts {
    var open = 0
    var rejected = 0
    var shed = 0
    var acceptErrors = 0
    var lastAcceptError: String?
  }

  private static let listening = NIOLockedValueBox(0)
  private let counts = NIOLockedValueBox(Counts())
  /// The configured limit; nil follows `automaticLimit`.
  public let configuredLimit: Int?

  public init(limit: Int?) {
    self.configuredLimit = limit
  }

  /// The limit in force now.
  public var limit: Int { self.configuredLimit ?? Self.automaticLimit }
  /// Connections open now.
  public var open: Int { self.counts.withLockedValue { $0.open } }
  /// Connections closed as soon as they were accepted because the limit was reached, since start.
  public var rejected: Int { self.counts.withLockedValue { $0.rejected } }
  /// Connections closed as soon as they were accepted because the process was out of
  /// descriptors, since start.
  public var shed: Int { self.counts.withLockedValue { $0.shed } }
  /// Failed accepts (out of descriptors or memory, aborted handshakes), since start.
  public var acceptErrors: Int { self.counts.withLockedValue { $0.acceptErrors } }
  /// The last accept error, e.g. "EMFILE".
  public var lastAcceptError: String? { self.counts.withLockedValue { $0.lastAcceptError } }

  /// The process's soft descriptor limit less a reserve, shared by every listener that is
  /// listening, at most `automaticCeiling`: the listeners together can't run the process out
  /// of descriptors.
  public static var automaticLimit: Int {
    let listeners = Self.listening.withLockedValue { $0 }
    let share = (Self.descriptorLimit - Self.reservedDescriptors) / max(2, listeners)
    return min(Self.automaticCeiling, max(16, share))
  }

  /// The soft RLIMIT_NOFILE.
  public static var descriptorLimit: Int {
    var limit = rlimit()
    #if canImport(Glibc)
      guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
    #else
      guard getrlimit(RLIMIT_NOFILE, &limit) == 0 else { return 1024 }
    #endif
    return Int(clamping: limit.rlim_cur)
  }

  /// Adds the limit and the descriptor-exhaustion handling to a listening channel; call it
  /// from the bootstrap's `serverChannelInitializer`, so it sits before the bootstrap's own
  /// accept handlers.
  public func configure(serverChannel: any Channel) throws {
    try serverChannel.pipeline.syncOperations.addHandler(AcceptGate(limiter: self))
  }

  /// Call once the listener is bound, and `listenerClosed()` once it stops: the automatic
  /// limit is shared among the listeners open at the time.
  public func listenerOpened() { Self.listening.withLockedValue { $0 += 1 } }
  public func listenerClosed() { Self.listening.withLockedValue { $0 -= 1 } }

  fileprivate func admit(_ channel: any Channel) -> Bool {
    let limit = self.limit
    let admitted = self.counts.withLockedValue { c -> Bool in
      guard c.open < limit else { return false }
      c.open += 1
      return true
    }
    if admitted {
      channel.closeFuture.whenComplete { [self] _ in self.counts.withLockedValue { $0.open -= 1 } }
    }
    return admitted
  }

  fileprivate func refuse(_ channel: any Channel, shedding: Bool) {
    self.counts.withLockedValue {
      if shedding { $0.shed += 1 } else { $0.rejected += 1 }
    }
    channel.close(promise: nil)
  }

  fileprivate func acceptFailed(_ name: String) {
    self.counts.withLockedValue {
      $0.acceptErrors += 1
      $0.lastAcceptError = name
    }
  }
}

/// The listening channel's gate: closes accepted connections beyond the limit before they are
/// set up, and sheds connections while the process is out of descriptors.
///
/// NIO retries a failed accept as soon as the listening socket polls readable again, which is
/// at once while connections wait in the backlog: on EMFILE the loop spins at 100 % CPU. NIO's
/// `AcceptBackoffHandler` can't stop that (a failed accept leaves the read pending, so the
/// socket stays registered for reading). So the process keeps a `DescriptorReserve`. On EMFILE
/// or ENFILE a gate frees one of its descriptors; the next accept succeeds, and every
/// connection any listener accepts while the reserve is short is closed at once (a clean close
/// for the client, instead of hanging in the backlog); then the reserve is taken back.
private final class AcceptGate: ChannelInboundHandler {
  typealias InboundIn = any Channel
  typealias InboundOut = any Channel

  private let limiter: ConnectionLimiter
  /// A descriptor was freed during this read: taking it back now would take the very
  /// descriptor the next accept needs.
  private var freedThisRead = false

  init(limiter: ConnectionLimiter) { self.limiter = limiter }

  func handlerAdded(context: ChannelHandlerContext) { DescriptorReserve.shared.retain() }

  func handlerRemoved(context: ChannelHandlerContext) { DescriptorReserve.shared.release() }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let child = Self.unwrapInboundIn(data)
    // After a quiet spell the reserve is taken back first, so the first connection after a
    // descriptor shortage is served rather than shed.
    if !self.freedThisRead { DescriptorReserve.shared.refillIfShedding() }
    if DescriptorReserve.shared.isShedding {
      self.limiter.refuse(child, shedding: true)
    } else if self.limiter.admit(child) {
      context.fireChannelRead(data)
    } else {
      self.limiter.refuse(child, shedding: false)
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if self.freedThisRead {
      self.freedThisRead = false
    } else {
      DescriptorReserve.shared.refillIfShedding()
    }
    context.fireChannelReadComplete()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    guard let error = error as? IOError else { return context.fireErrorCaught(error) }
    switch error.errnoCode {
    case EMFILE, ENFILE:
      self.limiter.acceptFailed(error.errnoCode == EMFILE ? "EMFILE" : "ENFILE")
      if DescriptorReserve.shared.free() { self.freedThisRead = true }
    default:
      // Aborted handshakes and the like: nothing to wait for, NIO goes on accepting.
      self.limiter.acceptFailed("errno \(error.errnoCode)")
    }
  }
}

/// Descriptors held back for the moment the process runs out, shared by every listener.
///
/// One reserve for the process, not one per listener: listeners accept on different threads,
/// so a descriptor one gate frees may be taken by another listener's accept. While the reserve
/// is short every listener sheds what it accepts, so whichever accept takes the freed
/// descriptor closes that connection again and the backlogs drain. Two descriptors, so a
/// descriptor taken by something else (a file opened on another thread) still leaves one.
final class DescriptorReserve: Sendable {
  static let shared = DescriptorReserve()
  private static let size = 2

  private struct State {
    var users = 0
    var spares: [Int32] = []
    var shedding = false
    /// The last time a descriptor was freed; the reserve is not refilled for `refillDelay`
    /// after it (see `refillIfShedding`).
    var lastFreed: NIODeadline = .distantPast
  }

  /// How long a freed descriptor stays free before the reserve takes it back.
  static let refillDelay = TimeAmount.milliseconds(500)
  private let state = NIOLockedValueBox(State())

  /// True while connections must be closed as soon as they are accepted.
  var isShedding: Bool { self.state.withLockedValue { $0.shedding } }

  /// A listener opened: the reserve is filled while any listener is open.
  func retain() {
    self.state.withLockedValue {
      $0.users += 1
      Self.fill(&$0)
    }
  }

  /// A listener closed: the last one out gives the reserve back.
  func release() {
    self.state.withLockedValue {
      $0.users -= 1
      guard $0.users <= 0 else { return }
      for fd in $0.spares { close(fd) }
      $0.spares = []
      $0.shedding = false
    }
  }

  /// The process is out of descriptors: start shedding and free one reserved descriptor.
  /// Returns whether one was freed.
  func free() -> Bool {
    self.state.withLockedValue {
      $0.shedding = true
      $0.lastFreed = .now()
      guard let fd = $0.spares.popLast() else { return false }
      close(fd)
      return true
    }
  }

  /// Takes freed descriptors back; shedding ends once the reserve is whole again. Not before
  /// `refillDelay` has passed since the last EMFILE: refilled at once, the reserve would keep
  /// the descriptor table full for as long as connections wait in the backlog, and the rest
  /// of the process needs a descriptor now and then — libdispatch's worker-pool monitor
  /// (Swift concurrency's threads on Linux) opens /proc/<tid>/stat every second and crashes
  /// the process (SIGILL in `_dispatch_workq_monitor_pools`) when that open fails.
  func refillIfShedding() {
    self.state.withLockedValue {
      guard $0.shedding, NIODeadline.now() - $0.lastFreed >= Self.refillDelay else { return }
      Self.fill(&$0)
      if $0.spares.count == Self.size { $0.shedding = false }
    }
  }

  private static func fill(_ state: inout State) {
    while state.spares.count < Self.size {
      let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { return }
      state.spares.append(fd)
    }
  }
}
