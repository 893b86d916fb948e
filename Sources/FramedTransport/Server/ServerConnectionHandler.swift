import FramedWire
import GRPCCore
import NIOCore
import WireProtos

/// What a server connection needs from its transport to start calls.
struct ServerCallbacks: Sendable {
  typealias StreamHandler =
    @Sendable (
      RPCStream<ServerTransportInbound, ServerTransportOutbound>, ServerContext
    ) async -> Void
  var streamHandler: StreamHandler
  /// Encodings this server decodes (and answers with).
  var encodings: EncodingSet
  /// Run handlers on the connection's event loop (see `FramedServerTransport.Config`).
  var runOnEventLoop = false
}

typealias ServerTransportInbound = RPCAsyncSequence<RPCRequestPart<FramedBytes>, any Error>
typealias ServerTransportOutbound = RPCWriter<RPCResponsePart<FramedBytes>>.Closable

/// The server side of a framed-wire connection: request streams and their handler tasks,
/// deadlines, answers the transport gives itself (bad requests, oversized messages), and the
/// two-phase drain.
final class ServerConnectionHandler: FramedConnectionHandler {
  var serverStreams: [UInt32: FramedStream<ServerInbound>] = [:]
  var deadlineTimers: [UInt32: Scheduled<Void>] = [:]
  let serverCallbacks: ServerCallbacks
  var drainTimer: Scheduled<Void>?
  var graceTimer: Scheduled<Void>?
  /// Created on first use when handlers run on this connection's loop.
  var loopExecutor: EventLoopTaskExecutor?
  static let drainPingOpaque: UInt64 = 0x4452_4149_4E21_0001  // "DRAIN!"

  init(config: FramedConnectionConfig, commands: ConnectionCommands, status: ConnectionStatus, callbacks: ServerCallbacks) {
    self.serverCallbacks = callbacks
    super.init(role: .server, config: config, commands: commands, status: status)
  }

  override func didReceivePreface() {
    // Answer the client's preface with ours once it proved it speaks the protocol.
    self.writePrefaceAndSettings()
  }

  override func willFailConnection() {
    // Not written yet (it answers a valid client preface): the peer reads a preface before any
    // frame, and ours says which version we speak (docs/protocol.md §2.3 step 7).
    if !self.machine.peerPrefaceReceived { Preface.write(into: &self.outbound) }
  }

  override var hasOpenCalls: Bool { !self.serverStreams.isEmpty }

  override func failAllCalls(reason: String) {
    self.drainTimer?.cancel()
    self.graceTimer?.cancel()
    for (_, t) in self.deadlineTimers { t.cancel() }
    self.deadlineTimers.removeAll()
    let streams = self.serverStreams
    self.serverStreams.removeAll()
    for (_, s) in streams { s.fail(RPCError(code: .cancelled, message: "\(reason): the client went away")) }
  }

  override func failCall(id: UInt32, error: RPCError) {
    guard let s = self.serverStreams.removeValue(forKey: id) else { return }
    self.deadlineTimers.removeValue(forKey: id)?.cancel()
    s.fail(error)
  }

  override func sent(_ bytes: Int, on id: UInt32) -> Int { self.serverStreams[id]?.sent(bytes) ?? 0 }

  override func streamClosed(id: UInt32) {
    self.deadlineTimers.removeValue(forKey: id)?.cancel()
    self.serverStreams.removeValue(forKey: id)?.finish()
  }

  override func received(_ message: ConnectionStateMachine.InboundMessage) {
    self.receivedMessage(id: message.streamID, message.bytes, compressed: message.compressed, credit: message.credit, endStream: message.endStream)
  }

  override func receivedOversizedMessage(id: UInt32, size: Int) {
    self.answerImmediately(
      id: id, code: .resourceExhausted,
      message: "request message of at least \(size) bytes exceeds the server's limit of \(self.config.settings.maxMessageSize) bytes (MAX_MESSAGE_SIZE)")
  }

  override func requestPromptCredit(id: UInt32) { self.serverStreams[id]?.requestPromptCredit() }

  override func receivedPingAck(opaque: UInt64) {
    if opaque == Self.drainPingOpaque { self.finishDrain() }
  }

  override func openRequestStream(id: UInt32, headers: RequestHeaders, endStream: Bool) {
    self.openStream(id: id, headers: headers, endStream: endStream)
  }

  override func receivedEndOfRequest(id: UInt32) { self.serverStreams[id]?.finish() }

  override func enforceDeadline(id: UInt32, timeout: TimeAmount) { self.enforceLateDeadline(id: id, timeout: timeout) }
}

extension ServerConnectionHandler {
  func openStream(id: UInt32, headers: RequestHeaders, endStream: Bool) {
    let callbacks = self.serverCallbacks
    guard let channel = self.context?.channel else { return }
    let peer = self.machine.peerSettings
    let stream = FramedStream<ServerInbound>(
      connection: self.commands,
      creditThreshold: min(16 * 1024, self.config.settings.initialStreamWindow / 4),
      // A peer's huge window must not mean a huge queue here.
      writeLimit: min(max(64 * 1024, peer.initialStreamWindow), self.config.maxQueuedBytes)
    )
    stream.streamID = id
    self.serverStreams[id] = stream

    // Anything wrong with the request itself is answered with a status, not a reset.
    guard let descriptor = Self.descriptor(fromPath: headers.method) else {
      self.answerImmediately(id: id, code: .unimplemented, message: "malformed method path \"\(headers.method.prefix(128))\"")
      return
    }
    guard let encoding = MessageEncoding(headerValue: headers.messageEncoding), callbacks.encodings.contains(encoding.bit) else {
      let names = MessageEncoding.allCases.filter { callbacks.encodings.contains($0.bit) }.map(\.rawValue)
      self.answerImmediately(
        id: id, code: .unimplemented,
        message: "message encoding \"\(headers.messageEncoding.prefix(64))\" is not supported; supported: \(names.joined(separator: ", "))")
      return
    }
    let metadata: Metadata
    switch WireMapping.metadata(headers.metadata) {
    case .success(let md): metadata = md
    case .failure(let error):
      self.answerImmediately(id: id, code: .internalError, message: error.message)
      return
    }
    // The caller's deadline stays with the transport, which enforces it on this loop (below)
    // and offers it to interceptors (`DeadlineEnforcing.callerDeadline`). It is not handed to
    // GRPCCore as `grpc-timeout`: GRPCCore would run a second timer, a task group with a
    // sleeping child task per call (~10 % of a small unary call's server CPU).
    let callerDeadline: ContinuousClock.Instant? = headers.timeoutUs > 0 ? .now + .microseconds(Int64(clamping: headers.timeoutUs)) : nil
    if headers.timeoutUs > 0 {
      let timeout = TimeAmount.microseconds(Int64(clamping: headers.timeoutUs))
      self.deadlineTimers[id] = channel.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
        self?.deadlineExpired(id: id, timeoutUs: headers.timeoutUs)
      }
    }
    self.inboundEncodings[id] = encoding
    stream.push(.metadata(metadata), credit: 0)
    if endStream { stream.finish() }

    // Responses use the request's encoding, and only if the client accepts it (its SETTINGS
    // ACCEPT_ENCODINGS, docs/protocol.md §7.3); otherwise they go uncompressed.
    let writer = ServerStreamWriter(
      stream: stream,
      encoding: peer.acceptEncodings.contains(encoding.bit) ? encoding : .identity,
      peerMaxMessageSize: peer.maxMessageSize,
      compressionMinBytes: self.config.compressionMinBytes
    )
    let rpcStream = RPCStream(
      descriptor: descriptor,
      inbound: RPCAsyncSequence(wrapping: FramedInbound(stream: stream)),
      outbound: RPCWriter.Closable(wrapping: writer)
    )
    let remote = Self.peerDescription(channel.remoteAddress)
    let local = Self.peerDescription(channel.localAddress)
    let handler = callbacks.streamHandler
    // One unstructured task per call, created right here on the event loop: no intermediate
    // queue or consumer task between a HEADERS frame and its handler.
    let body: @Sendable () async -> Void = {
      await withServerContextRPCCancellationHandle { handle in
        stream.attach(cancellation: handle)
        var context = ServerContext(descriptor: descriptor, remotePeer: remote, localPeer: local, cancellation: handle)
        context.transportSpecific = FramedCallControl(stream: stream, callerDeadline: callerDeadline)
        await handler(rpcStream, context)
      }
      stream.detachTask()
    }
    let task: Task<Void, Never>
    if callbacks.runOnEventLoop {
      if self.loopExecutor == nil { self.loopExecutor = EventLoopTaskExecutor(channel.eventLoop) }
      task = Task(executorPreference: self.loopExecutor!, operation: body)
    } else {
      task = Task(operation: body)
    }
    stream.attach(task: task)
  }

  func receivedMessage(id: UInt32, _ bytes: ByteBuffer, compressed: Bool, credit: Int, endStream: Bool) {
    guard let stream = self.serverStreams[id] else { return }
    switch self.decompressInbound(id: id, bytes, compressed: compressed) {
    case .success(let message):
      stream.push(.message(FramedBytes(message)), credit: credit)
      if endStream { stream.finish() }
    case .failure(let error):
      self.answerImmediately(id: id, code: Status.Code(error.code), message: error.message)
    }
  }

  /// Ends a call from the transport: TRAILERS go out ahead of anything queued, the handler is
  /// cancelled and sees `code` if it reads or writes.
  func answerImmediately(id: UInt32, code: Status.Code, message: String) {
    var trailers = Trailers()
    trailers.code = UInt32(code.rawValue)
    trailers.message = message
    if self.machine.isMidMessage(streamID: id) {
      // TRAILERS can't interrupt a half-sent message (docs/protocol.md §12): reset instead.
      if let rst = self.machine.resetStream(streamID: id, code: .cancel) { FrameEncoder.encode(rst, into: &self.outbound) }
    } else {
      // Drop queued output: the call is over.
      _ = self.machine.resetStream(streamID: id, code: .noError)
      FrameEncoder.encode(.trailers(streamID: id, payload: WireMapping.encode(trailers)), into: &self.outbound)
    }
    self.streamGone(id: id, error: RPCError(code: RPCError.Code(code) ?? .internalError, message: message))
  }

  /// A deadline set after the call started (a server-side default): the same cheap loop timer
  /// as a caller's deadline, not a task per call.
  func enforceLateDeadline(id: UInt32, timeout: TimeAmount) {
    guard self.serverStreams[id] != nil, self.deadlineTimers[id] == nil, let loop = self.context?.eventLoop else { return }
    let us = UInt64(max(0, timeout.nanoseconds / 1000))
    self.deadlineTimers[id] = loop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
      self?.deadlineExpired(id: id, timeoutUs: us)
    }
  }

  private func deadlineExpired(id: UInt32, timeoutUs: UInt64) {
    self.deadlineTimers.removeValue(forKey: id)
    guard self.serverStreams[id] != nil else { return }
    self.answerImmediately(id: id, code: .deadlineExceeded, message: "deadline of \(timeoutUs) µs exceeded on the server")
    self.flush()
  }

  // MARK: Drain

  /// Phase one of the two-phase GOAWAY; phase two on the PING ACK or after a timeout.
  func beginDrain() {
    guard !self.closing else { return }
    guard self.machine.peerSettingsReceived else {
      // No stream can exist before the handshake: refuse the connection now, readably —
      // preface (if not sent yet), then GOAWAY(0, NO_ERROR) (docs/protocol.md §11.2).
      self.connectionError(ConnectionError(.noError, "server is shutting down"))
      return
    }
    let frames = self.machine.beginDrain(pingOpaque: Self.drainPingOpaque)
    guard !frames.isEmpty, let loop = self.context?.eventLoop else { return }
    self.status.markDraining()
    for f in frames { FrameEncoder.encode(f, into: &self.outbound) }
    self.flush()
    self.drainTimer = loop.assumeIsolated().scheduleTask(in: self.config.drainPingTimeout) { [weak self] in self?.finishDrain() }
  }

  /// Phase two: the final GOAWAY, which starts this connection's grace period.
  func finishDrain() {
    // Only after phase one, and once: a stray PING ACK carrying our opaque changes nothing.
    guard !self.closing, self.machine.localGoAway == .draining, let loop = self.context?.eventLoop else { return }
    self.drainTimer?.cancel()
    self.drainTimer = nil
    guard let goAway = self.machine.finishDrain() else { return }
    FrameEncoder.encode(goAway, into: &self.outbound)
    // Counted from here, not from the start of the drain (§11.2 step 4): only now does the
    // client know which of its calls still run, and each of them gets the whole grace.
    // Scheduled before the flush, which may already close (and so cancel it).
    self.graceTimer = loop.assumeIsolated().scheduleTask(in: self.config.drainGrace) { [weak self] in self?.drainGraceExpired() }
    self.flush()
    self.closeIfDrained()
  }

  /// Grace is over: each call still open ends with TRAILERS(UNAVAILABLE) (RST(CANCEL) if a
  /// response message is half-sent), its handler is cancelled, and the connection closes.
  private func drainGraceExpired() {
    for (id, _) in self.serverStreams {
      self.answerImmediately(id: id, code: .unavailable, message: "server shut down before the call completed")
    }
    self.closeAfterFlush(reason: "drain grace period over")
  }

  static func descriptor(fromPath path: String) -> MethodDescriptor? {
    guard path.first == "/" else { return nil }
    let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
    return MethodDescriptor(fullyQualifiedService: String(parts[0]), method: String(parts[1]))
  }

}

/// What a framed-wire call offers interceptors beyond GRPCCore's `ServerContext`
/// (`context.transportSpecific`). Package-only: ServiceKit's `DeadlineInterceptor` uses it to
/// put default deadlines on the connection's loop timer.
package protocol DeadlineEnforcing: ServerContext.TransportSpecific {
  /// The caller's deadline (its `grpc-timeout` when the call arrived), which the transport
  /// already enforces; nil when the caller set none.
  var callerDeadline: ContinuousClock.Instant? { get }
  /// Ends the call with DEADLINE_EXCEEDED (trailers out, handler cancelled) at `deadline`,
  /// unless the caller already set one.
  func enforceDeadline(_ deadline: ContinuousClock.Instant)
}

struct FramedCallControl: DeadlineEnforcing {
  let stream: FramedStream<RPCRequestPart<FramedBytes>>
  let callerDeadline: ContinuousClock.Instant?

  func enforceDeadline(_ deadline: ContinuousClock.Instant) {
    let left = max(.zero, ContinuousClock.now.duration(to: deadline))
    self.stream.connection.send(.deadline(self.stream, TimeAmount(left)))
  }
}
