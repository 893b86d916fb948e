import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// A GRPCCore `ServerTransport` that speaks the Quizwire framed wire over TCP (optionally TLS).
///
/// Each accepted connection runs one `FramedConnectionHandler`; each call runs in its own task.
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

    public init(host: String = "127.0.0.1", port: Int = 0) {
      self.host = host
      self.port = port
      // A server keeps idle connections quiet; clients ping.
      self.connection.keepaliveInterval = nil
    }
  }

  private struct State {
    var serverChannel: (any Channel)?
    var connections: [ObjectIdentifier: (channel: any Channel, handler: NIOLoopBound<FramedConnectionHandler>)] = [:]
    var shuttingDown = false
    var listening = false
    var addressWaiters: [CheckedContinuation<SocketAddress, any Error>] = []
    var address: SocketAddress?
  }

  public let config: Config
  private let group: any EventLoopGroup
  private let state = NIOLockedValueBox(State())
  private let sslContext: NIOSSLContext?

  public init(config: Config, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
    self.config = config
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
    let bootstrap = ServerBootstrap(group: self.group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { [weak self] channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          if let sslContext { try sync.addHandler(FramedTLS.serverHandler(sslContext)) }
          let commands = ConnectionCommands(eventLoop: channel.eventLoop)
          let handler = FramedConnectionHandler(
            role: .server, config: config, commands: commands, status: ConnectionStatus(), serverCallbacks: callbacks)
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

  private func register(channel: any Channel, handler: NIOLoopBound<FramedConnectionHandler>) {
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
