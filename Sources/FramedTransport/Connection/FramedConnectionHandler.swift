import DequeModule
import FramedWire
import GRPCCore
import NIOCore
import WireProtos

/// The NIO shell of one framed-wire connection: what both roles share.
///
/// It feeds decoded items and call commands into `ConnectionStateMachine` and performs the
/// returned results: frames into one outbound buffer that is written and flushed once per read
/// burst or command batch, timers for keepalive and the handshake, the close. What only one
/// role does lives in `ServerConnectionHandler` (request streams, deadlines, the drain) and
/// `ClientConnectionHandler` (opening calls, responses, the polite close), which override the
/// role hooks below — as grpc-swift-nio-transport splits its client and server handlers.
class FramedConnectionHandler: ChannelInboundHandler {
  typealias InboundIn = DecodedItem
  typealias OutboundOut = ByteBuffer

  typealias ServerInbound = RPCRequestPart<FramedBytes>
  typealias ClientInbound = RPCResponsePart<FramedBytes>

  let role: ConnectionStateMachine.Role
  let config: FramedConnectionConfig
  var machine: ConnectionStateMachine
  let commands: ConnectionCommands
  /// Shared with the transport: readiness, peer settings, draining.
  let status: ConnectionStatus

  var context: ChannelHandlerContext?
  var outbound: ByteBuffer
  var sendEvents: [ConnectionStateMachine.SendEvent] = []
  var closing = false
  var flushing = false
  var flushAgain = false

  /// The peer's message encoding per stream, for decompressing what it sends.
  var inboundEncodings: [UInt32: MessageEncoding] = [:]
  var keepalive: KeepaliveState?
  var keepaliveTask: RepeatedTask?
  var handshakeTimer: Scheduled<Void>?
  var nextPingOpaque: UInt64 = 1

  init(role: ConnectionStateMachine.Role, config: FramedConnectionConfig, commands: ConnectionCommands, status: ConnectionStatus) {
    self.role = role
    self.config = config
    self.machine = ConnectionStateMachine(role: role, localSettings: config.settings)
    self.commands = commands
    self.status = status
    self.outbound = ByteBuffer()
  }

  // MARK: Role hooks (each role overrides what it handles; the machine never reports the rest)

  /// The channel is active: a client writes its preface and SETTINGS.
  func didStart() {}
  /// The peer's preface arrived: a server answers with its own.
  func didReceivePreface() {}
  /// About to send a connection error's GOAWAY: a server that has not written its preface
  /// writes it first (docs/protocol.md §2.3 step 7).
  func willFailConnection() {}
  /// Whether any call is still open on this connection.
  var hasOpenCalls: Bool { false }
  /// Fails every open call as the connection goes (`reason` says why) and stops role timers.
  func failAllCalls(reason: String) {}
  /// Ends one call with `error`; returns whether it was open.
  func failCall(id: UInt32, error: RPCError) {}
  /// Bytes of a stream's queued output left the queue: returns what its writer released.
  func sent(_ bytes: Int, on id: UInt32) -> Int { 0 }
  /// A stream's last frame left: the call is over on our side.
  func streamClosed(id: UInt32) {}
  /// A whole message arrived for a call.
  func received(_ message: ConnectionStateMachine.InboundMessage) {}
  /// A message over our MAX_MESSAGE_SIZE arrived for a call.
  func receivedOversizedMessage(id: UInt32, size: Int) {}
  /// A fragment's credit is held: the call's reader must report consumption promptly.
  func requestPromptCredit(id: UInt32) {}
  /// The ACK of one of our PINGs (keepalive is handled already).
  func receivedPingAck(opaque: UInt64) {}
  /// Server: a request stream opened.
  func openRequestStream(id: UInt32, headers: RequestHeaders, endStream: Bool) {}
  /// Server: the client half-closed without a message.
  func receivedEndOfRequest(id: UInt32) {}
  /// Client: response HEADERS arrived.
  func receivedResponseHeaders(id: UInt32, _ headers: ResponseHeaders) {}
  /// Client: the call ended with these trailers.
  func receivedTrailers(id: UInt32, _ trailers: Trailers) {}
  /// Client: a call's HEADERS are to be sent.
  func open(_ stream: any StreamHandle, headers: ByteBuffer, endStream: Bool) {}
  /// Server: a deadline set after the call started.
  func enforceDeadline(id: UInt32, timeout: TimeAmount) {}

  // MARK: Lifecycle

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.outbound = context.channel.allocator.buffer(capacity: 16 * 1024)
    // Both bound what a peer that stops reading can make us hold: the channel turns unwritable
    // past `high` and the send scheduler stops; writers stop at the budget.
    try? context.channel.syncOptions?.setOption(.writeBufferWaterMark, value: self.config.writeBufferWaterMark)
    self.commands.setBudget(self.config.maxQueuedBytes)
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    self.commands.setSink { batch in bound.value.perform(batch) }
    if context.channel.isActive { self.start(context: context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
  }

  func channelActive(context: ChannelHandlerContext) {
    self.start(context: context)
    context.fireChannelActive()
  }

  private var started = false
  private func start(context: ChannelHandlerContext) {
    guard !self.started else { return }
    self.started = true
    self.didStart()
    self.handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.config.handshakeTimeout) { [weak self] in
      guard let self, !self.machine.peerSettingsReceived else { return }
      self.connectionError(ConnectionError(.settingsTimeout, "no preface and SETTINGS within \(self.config.handshakeTimeout)"))
    }
    if let interval = self.config.keepaliveInterval {
      self.keepalive = KeepaliveState(interval: interval, timeout: self.config.keepaliveTimeout, now: .now())
      // A quarter of the shorter of the two, at least 1 ms.
      let tick = max(TimeAmount.nanoseconds(min(interval, self.config.keepaliveTimeout).nanoseconds / 4), .milliseconds(1))
      // Bound to the loop it runs on; tearDown cancels it, which releases the handler.
      let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
      self.keepaliveTask = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
        bound.value.keepaliveTick()
      }
    }
  }

  func writePrefaceAndSettings() {
    Preface.write(into: &self.outbound)
    FrameEncoder.encodeSettings(self.config.settings, into: &self.outbound)
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.tearDown(reason: "connection closed")
    context.fireChannelInactive()
  }

  /// Fails every call and stops timers; idempotent.
  func tearDown(reason: String) {
    for command in self.commands.close() {
      // Only calls whose HEADERS never went out are unknown to the stream maps below.
      guard case .open(let stream, _, _) = command else { continue }
      stream.fail(RPCError(code: .unavailable, message: "\(reason) before the call was sent"))
    }
    self.keepaliveTask?.cancel()
    self.handshakeTimer?.cancel()
    self.failAllCalls(reason: reason)
    self.machine.discardQueuedSends()
    self.status.markClosed(reason: reason)
    HeapTrim.connectionClosed(peakQueuedBytes: self.commands.peakQueuedBytes)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let error = error as? ConnectionError {
      self.connectionError(error)
    } else {
      // I/O errors (reset by peer, TLS failures): nothing more can be sent.
      self.tearDown(reason: "connection error: \(error)")
      context.close(promise: nil)
    }
  }

  /// Sends GOAWAY for a connection error and closes.
  func connectionError(_ error: ConnectionError) {
    guard !self.closing else { return }
    self.willFailConnection()
    self.failConnection(self.machine.connectionError(error))
  }

  /// Writes the connection error's GOAWAY (if any) and closes.
  func failConnection(_ failure: ConnectionFailure) {
    if let goAway = failure.goAway { FrameEncoder.encode(goAway, into: &self.outbound) }
    self.closeAfterFlush(reason: "connection error \(failure.error)")
  }

  func closeAfterFlush(reason: String) {
    guard !self.closing, let context = self.context else { return }
    self.closing = true
    // Write what is buffered (TRAILERS, GOAWAY) directly — this may run inside flush() — and
    // close only once it left, so the peer always gets the last frames.
    let out = self.outbound
    self.outbound.clear()
    self.tearDown(reason: reason)
    // ... but not for longer than `closeTimeout`: a peer that stopped reading must not hold
    // the connection (and a drain waiting for it) open forever.
    let channel = context.channel
    let deadline = context.eventLoop.scheduleTask(in: self.config.closeTimeout) { channel.close(promise: nil) }
    context.writeAndFlush(Self.wrapOutboundOut(out)).whenComplete { _ in
      deadline.cancel()
      channel.close(promise: nil)
    }
  }

  // MARK: Inbound

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !self.closing else { return }
    let item = Self.unwrapInboundIn(data)
    let now = NIODeadline.now()
    self.keepalive?.received(at: now)
    switch item {
    case .preface:
      self.didReceivePreface()
      if case .connectionError(let failure) = self.machine.receivePreface() { self.failConnection(failure) }
    case .frame(let frame):
      self.receive(frame, now: now)
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.flush()
    context.fireChannelReadComplete()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { self.flush() }
    context.fireChannelWritabilityChanged()
  }

  /// A stream ended abnormally: its call sees `error`.
  func streamGone(id: UInt32, error: RPCError) {
    self.inboundEncodings.removeValue(forKey: id)
    self.failCall(id: id, error: error)
    self.closeIfDrained()
  }

  /// Performs a batch of call commands, then writes once.
  func perform(_ batch: Deque<StreamCommand>) {
    guard !self.closing else { return }
    var dropped = 0
    for command in batch {
      switch command {
      case .open(let stream, let headers, let endStream):
        self.open(stream, headers: headers, endStream: endStream)
      case .responseHeaders(let stream, let payload):
        if self.machine.sendResponseHeaders(streamID: stream.streamID) {
          FrameEncoder.encode(.headers(streamID: stream.streamID, endStream: false, payload: payload), into: &self.outbound)
        }
      case .message(let stream, let bytes, let compressed, let endStream):
        if !self.machine.queue(.message(bytes, compressed: compressed, endStream: endStream), streamID: stream.streamID) {
          // The stream is gone: release the writer's accounting.
          dropped += stream.sent(WriteBudget.cost(message: bytes.readableBytes))
        }
      case .halfClose(let stream):
        _ = self.machine.queue(.halfClose, streamID: stream.streamID)
      case .trailers(let stream, var payload):
        if payload.readableBytes > self.machine.peerSettings.maxHeaderListSize {
          // Too big for the client to accept: say so instead (docs/protocol.md §14).
          var t = Trailers()
          t.code = UInt32(Status.Code.internalError.rawValue)
          t.message = "response trailers of \(payload.readableBytes) bytes exceed the client's MAX_HEADER_LIST_SIZE"
          payload = WireMapping.encode(t)
        }
        _ = self.machine.queue(.trailers(payload), streamID: stream.streamID)
      case .reset(let stream, let code):
        let id = stream.streamID
        if id != 0, let rst = self.machine.resetStream(streamID: id, code: code) {
          FrameEncoder.encode(rst, into: &self.outbound)
        }
        if id != 0 { self.streamGone(id: id, error: RPCError(code: .cancelled, message: "call cancelled")) }
      case .credit(let stream, let credit):
        if let update = self.machine.consumed(streamID: stream.streamID, credit: credit) {
          FrameEncoder.encode(update, into: &self.outbound)
        }
      case .deadline(let stream, let timeout):
        self.enforceDeadline(id: stream.streamID, timeout: timeout)
      }
    }
    self.commands.release(dropped)
    self.flush()
  }

  // MARK: Keepalive

  private func keepaliveTick() {
    guard var k = self.keepalive, !self.closing else { return }
    let opaque = self.nextPingOpaque
    switch k.tick(now: .now(), nextOpaque: opaque) {
    case .nothing:
      break
    case .sendPing(let opaque):
      self.nextPingOpaque &+= 1
      FrameEncoder.encode(.ping(ack: false, opaque: opaque), into: &self.outbound)
      self.flush()
    case .dead:
      self.keepalive = k
      self.tearDown(reason: "keepalive: no PING ACK within \(self.config.keepaliveTimeout), peer presumed dead")
      self.closing = true
      self.context?.close(promise: nil)
      return
    }
    self.keepalive = k
  }

  /// Closes once no stream is left after a GOAWAY that ends the connection (client: either
  /// side's; server: its own final one — a client's GOAWAY changes nothing, §11.4).
  func closeIfDrained() {
    guard !self.closing, self.machine.closesWhenIdle, self.machine.openStreamCount == 0, !self.hasOpenCalls else { return }
    self.closeAfterFlush(reason: "drained")
  }
}

extension FramedConnectionHandler {
  /// "ipv4:host:port" and the like, as GRPCCore names peers.
  static func peerDescription(_ address: SocketAddress?) -> String {
    guard let address else { return "unknown" }
    switch address {
    case .v4(let a): return "ipv4:\(a.host):\(address.port ?? 0)"
    case .v6(let a): return "ipv6:[\(a.host)]:\(address.port ?? 0)"
    case .unixDomainSocket: return "unix:\(address.pathname ?? "")"
    }
  }
}
