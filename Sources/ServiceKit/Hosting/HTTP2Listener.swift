import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// The gRPC/HTTP2 listener: grpc-swift-nio-transport's connection pipeline on a bootstrap of
/// our own (`HTTP2ServerTransport.Custom`), for what its `Posix` listener has no setting for:
/// the connection cap and accept backoff (`ConnectionLimiter`) and a deadline for the client
/// preface. Plaintext, as the host serves it.
struct HTTP2Listener: HTTP2ServerTransport.ListenerFactory {
  let host: String
  let port: Int
  let eventLoopGroup: any EventLoopGroup
  let limiter: ConnectionLimiter
  /// How long a client has to send the whole preface (the framed port's handshake timeout).
  let handshakeTimeout: TimeAmount
  let handshakeTimeouts: EventCounter
  /// How long a client has to answer the PING sent with a GOAWAY (the framed drain's wait).
  let goAwayPingTimeout: TimeAmount

  func makeListeningChannel(
    listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
    connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
  ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
    let (limiter, timeout, timeouts, pingTimeout) = (self.limiter, self.handshakeTimeout, self.handshakeTimeouts, self.goAwayPingTimeout)
    let server = try await ServerBootstrap(group: self.eventLoopGroup)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .serverChannelInitializer { channel in
        // The cap first: refused connections never reach the transport's quiescing handler.
        channel.eventLoop.makeCompletedFuture { try limiter.configure(serverChannel: channel) }
          .flatMap { listenerConfigurator.configure(channel: channel) }
      }
      .bind(host: self.host, port: self.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(PrefaceTimeoutHandler(timeout: timeout, onTimeout: { timeouts.increment() }))
        }.flatMap {
          connectionConfigurator.configure(channel: channel, tls: .none)
        }.flatMapThrowing { configured in
          let sync = channel.pipeline.syncOperations
          try sync.addHandler(GoAwayPingDeadlineHandler(timeout: pingTimeout), position: .after(try sync.handler(type: NIOHTTP2Handler.self)))
          return configured
        }
      }
    limiter.listenerOpened()
    server.channel.closeFuture.whenComplete { _ in limiter.listenerClosed() }
    return server
  }
}

/// A count bumped from event loops and read at scrape time.
final class EventCounter: Sendable {
  private let value = NIOLockedValueBox(0)
  func increment() { self.value.withLockedValue { $0 += 1 } }
  var count: Int { self.value.withLockedValue { $0 } }
}

/// Closes a connection whose client hasn't sent the whole HTTP/2 preface (the 24-byte magic
/// and its first SETTINGS frame) within the timeout. grpc-swift-nio-transport has no such
/// deadline: a connection that stops half-way through the preface would stay open forever.
final class PrefaceTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  private static let magicLength = 24
  private let timeout: TimeAmount
  private let onTimeout: @Sendable () -> Void
  private var timer: Scheduled<Void>?
  private var received = 0
  /// The first frame's 9-byte header, once it has arrived in full.
  private var header: [UInt8] = []
  private var done = false

  init(timeout: TimeAmount, onTimeout: @escaping @Sendable () -> Void) {
    self.timeout = timeout
    self.onTimeout = onTimeout
  }

  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive { self.startTimer(context: context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    self.startTimer(context: context)
    context.fireChannelActive()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.timer?.cancel()
    self.timer = nil
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.timer?.cancel()
    self.timer = nil
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if !self.done { self.consume(Self.unwrapInboundIn(data)) }
    context.fireChannelRead(data)
    if self.done {
      self.timer?.cancel()
      self.timer = nil
      context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
  }

  private func startTimer(context: ChannelHandlerContext) {
    guard self.timer == nil, !self.done else { return }
    let onTimeout = self.onTimeout
    self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) {
      onTimeout()
      context.close(promise: nil)
    }
  }

  /// Counts preface bytes: the magic, then the first frame's header and payload.
  private func consume(_ buffer: ByteBuffer) {
    var buffer = buffer
    let magicLeft = max(0, Self.magicLength - self.received)
    let skipped = min(magicLeft, buffer.readableBytes)
    buffer.moveReaderIndex(forwardBy: skipped)
    self.received += skipped
    if self.header.count < 9, let bytes = buffer.readBytes(length: min(9 - self.header.count, buffer.readableBytes)) {
      self.header += bytes
      self.received += bytes.count
    }
    guard self.header.count == 9 else { return }
    let payload = Int(self.header[0]) << 16 | Int(self.header[1]) << 8 | Int(self.header[2])
    self.received += buffer.readableBytes
    self.done = self.received >= Self.magicLength + 9 + payload
  }
}

/// Answers a request message over the size limit with RESOURCE_EXHAUSTED, for that call only.
/// grpc-swift-nio-transport, meeting one, resets the stream (the client reads CANCELLED or
/// UNAVAILABLE) and ends the handler's input as if it were empty (the server logs INTERNAL).
/// Installed in front of the transport's handler on each stream, this reads the gRPC length
/// prefixes itself and, on the first one over the limit: fails the call's input with
/// RESOURCE_EXHAUSTED (so the handler, the logs and the metrics see that code), sends the
/// client trailers with the same status, and resets the stream with NO_ERROR so the client stops
/// sending (a client that sees the trailers first reports RESOURCE_EXHAUSTED; grpcio does).
/// A compressed message that only exceeds the limit once inflated is still the transport's.
final class RequestSizeLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private let limit: Int
  /// The current message's length prefix, while it is incomplete.
  private var prefix: [UInt8] = []
  /// Bytes of the current message still to come.
  private var remaining = 0
  private var responseHeadersSent = false
  private var answered = false

  init(limit: Int) { self.limit = limit }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !self.answered else { return }  // the rest of a refused request
    if case .data(let frame) = Self.unwrapInboundIn(data), case .byteBuffer(let buffer) = frame.data,
      let size = self.oversizedMessage(in: buffer)
    {
      self.refuse(context: context, size: size)
      return
    }
    context.fireChannelRead(data)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    guard !self.answered else {
      promise?.fail(ChannelError.ioOnClosedChannel)
      return
    }
    if case .headers = Self.unwrapOutboundIn(data) { self.responseHeadersSent = true }
    context.write(data, promise: promise)
  }

  /// Walks the gRPC framing (1 flag byte, 4 length bytes, the message) across DATA frames;
  /// returns the first length over the limit.
  private func oversizedMessage(in buffer: ByteBuffer) -> Int? {
    var buffer = buffer
    while buffer.readableBytes > 0 {
      if self.remaining > 0 {
        let skip = min(self.remaining, buffer.readableBytes)
        buffer.moveReaderIndex(forwardBy: skip)
        self.remaining -= skip
        continue
      }
      self.prefix += buffer.readBytes(length: min(5 - self.prefix.count, buffer.readableBytes)) ?? []
      guard self.prefix.count == 5 else { break }
      let length = Int(self.prefix[1]) << 24 | Int(self.prefix[2]) << 16 | Int(self.prefix[3]) << 8 | Int(self.prefix[4])
      self.prefix = []
      if length > self.limit { return length }
      self.remaining = length
    }
    return nil
  }

  private func refuse(context: ChannelHandlerContext, size: Int) {
    self.answered = true
    let message = "request message of \(size) bytes is over the limit of \(self.limit) bytes"
    context.fireErrorCaught(RPCError(code: .resourceExhausted, message: message))
    var trailers: HPACKHeaders = self.responseHeadersSent ? [:] : [":status": "200", "content-type": "application/grpc"]
    trailers.add(name: "grpc-status", value: "\(Status.Code.resourceExhausted.rawValue)")
    trailers.add(name: "grpc-message", value: message)
    context.write(Self.wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
    // The response is complete; RST_STREAM(NO_ERROR) asks the client to stop sending the rest
    // (RFC 9113 §8.1). Closing the stream channel instead would reset it with CANCEL, which
    // clients (grpcio) report as CANCELLED in place of the trailers' status.
    context.writeAndFlush(Self.wrapOutboundOut(.rstStream(.noError)), promise: nil)
    context.close(promise: nil)
  }
}

/// Closes a connection that doesn't answer the PING the transport sends with its first GOAWAY
/// (idle, too old, or draining) within the timeout. The transport waits for that answer before
/// its final GOAWAY and grace timer, so a peer that never answers would keep the connection
/// open for good. Sits between the HTTP/2 handler and the transport's connection handler.
final class GoAwayPingDeadlineHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  private let timeout: TimeAmount
  private var timer: Scheduled<Void>?
  private var answered = false

  init(timeout: TimeAmount) { self.timeout = timeout }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if case .goAway = Self.unwrapOutboundIn(data).payload, self.timer == nil, !self.answered {
      self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) { context.close(promise: nil) }
    }
    context.write(data, promise: promise)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .ping(_, ack: true) = Self.unwrapInboundIn(data).payload, let timer = self.timer {
      timer.cancel()
      self.answered = true
    }
    context.fireChannelRead(data)
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.timer?.cancel()
    context.fireChannelInactive()
  }

  func handlerRemoved(context: ChannelHandlerContext) { self.timer?.cancel() }
}

extension ServiceHost {
  /// How the gRPC/HTTP2 listener manages its connections (grpc-swift-nio-transport's
  /// connection settings, plus what `HTTP2Listener` adds).
  public struct GRPCConnections: Sendable {
    /// A connection with no call for this long is closed (GOAWAY, then close); nil: never.
    public var maxIdle: Duration? = .seconds(300)
    /// A connection this old is asked to go away (GOAWAY), so clients reconnect and spread
    /// over replicas; nil: never.
    public var maxAge: Duration? = .seconds(3600)
    /// How long the calls still running on a connection past `maxAge` get.
    public var maxAgeGrace: Duration = .seconds(300)
    /// Ping a connection that has sent nothing for this long; no answer within
    /// `keepaliveTimeout` closes it.
    public var keepaliveTime: Duration = .seconds(60)
    public var keepaliveTimeout: Duration = .seconds(20)
    /// Clients may ping this often, with or without calls running (the framed wire's minimum);
    /// more often is a strike, and repeated strikes close the connection.
    public var minClientPingInterval: Duration = .seconds(10)
    public init() {}
  }

  /// The transport configuration for the gRPC/HTTP2 listener.
  static func grpcTransportConfig(_ config: Config) -> HTTP2ServerTransport.Custom<HTTP2Listener>.Config {
    var c = HTTP2ServerTransport.Custom<HTTP2Listener>.Config.defaults
    c.compression.enabledAlgorithms = .all
    // The same limits as the framed listener, so they compare fairly.
    c.http2.maxConcurrentStreams = config.framed.connection.settings.maxConcurrentStreams
    c.rpc.maxRequestPayloadSize = config.framed.connection.settings.maxMessageSize
    c.connection.maxIdleTime = config.grpc.maxIdle
    c.connection.maxAge = config.grpc.maxAge
    c.connection.maxGraceTime = config.grpc.maxAgeGrace
    c.connection.keepalive = .init(
      time: config.grpc.keepaliveTime, timeout: config.grpc.keepaliveTimeout,
      clientBehavior: .init(minPingIntervalWithoutCalls: config.grpc.minClientPingInterval, allowWithoutCalls: true))
    let limit = c.rpc.maxRequestPayloadSize
    c.channelDebuggingCallbacks.onAcceptHTTP2Stream = { stream in
      stream.eventLoop.makeCompletedFuture {
        try stream.pipeline.syncOperations.addHandler(RequestSizeLimitHandler(limit: limit), position: .first)
      }
    }
    return c
  }
}
