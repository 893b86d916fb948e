import FramedWire
import GRPCCore
import NIOCore
import WireProtos

/// The client side of a framed-wire connection: opening calls, their responses and trailers,
/// failing a call locally, and the polite close.
final class ClientConnectionHandler: FramedConnectionHandler {
  var clientStreams: [UInt32: FramedStream<ClientInbound>] = [:]
  /// Calls with a deadline (`FramedClientTransport.callDeadline`): one loop timer each.
  var deadlineTimers: [UInt32: Scheduled<Void>] = [:]

  init(config: FramedConnectionConfig, commands: ConnectionCommands, status: ConnectionStatus) {
    super.init(role: .client, config: config, commands: commands, status: status)
  }

  override func didStart() {
    // The client speaks first: preface and SETTINGS, without waiting (docs/protocol.md §2.3).
    self.writePrefaceAndSettings()
    self.flush()
  }

  override var hasOpenCalls: Bool { !self.clientStreams.isEmpty }

  override func failAllCalls(reason: String) {
    for (_, t) in self.deadlineTimers { t.cancel() }
    self.deadlineTimers.removeAll()
    let streams = self.clientStreams
    self.clientStreams.removeAll()
    for (_, s) in streams { s.fail(RPCError(code: .unavailable, message: "\(reason) before the call completed")) }
  }

  override func failCall(id: UInt32, error: RPCError) {
    self.deadlineTimers.removeValue(forKey: id)?.cancel()
    self.clientStreams.removeValue(forKey: id)?.fail(error)
  }

  override func enforceDeadline(id: UInt32, timeout: TimeAmount) {
    guard self.clientStreams[id] != nil, let loop = self.context?.eventLoop else { return }
    self.deadlineTimers[id] = loop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
      guard let self, self.deadlineTimers.removeValue(forKey: id) != nil else { return }
      // The server should have ended the call at the same deadline; it didn't (it is slow,
      // stuck or unreachable), so the call ends here and the server is told to stop.
      self.clientFail(id: id, RPCError(code: .deadlineExceeded, message: "deadline exceeded waiting for the server's answer"))
      self.flush()
    }
  }

  override func sent(_ bytes: Int, on id: UInt32) -> Int { self.clientStreams[id]?.sent(bytes) ?? 0 }

  override func received(_ message: ConnectionStateMachine.InboundMessage) {
    self.receivedMessage(id: message.streamID, message.bytes, compressed: message.compressed, credit: message.credit)
  }

  override func receivedOversizedMessage(id: UInt32, size: Int) {
    let limit = self.config.settings.maxMessageSize
    self.streamGone(
      id: id,
      error: RPCError(
        code: .resourceExhausted, message: "response message of at least \(size) bytes exceeds the client's limit of \(limit) bytes (MAX_MESSAGE_SIZE)"))
  }

  override func requestPromptCredit(id: UInt32) { self.clientStreams[id]?.requestPromptCredit() }

  override func receivedResponseHeaders(id: UInt32, _ headers: ResponseHeaders) { self.receivedHeaders(id: id, headers) }

  override func receivedTrailers(id: UInt32, _ trailers: Trailers) { self.receivedCallTrailers(id: id, trailers) }

  override func open(_ stream: any StreamHandle, headers: ByteBuffer, endStream: Bool) {
    self.openCall(stream, headers: headers, endStream: endStream)
  }
}

extension ClientConnectionHandler {
  func openCall(_ handle: any StreamHandle, headers: ByteBuffer, endStream: Bool) {
    guard let stream = handle as? FramedStream<ClientInbound> else { return }
    let limit = self.machine.peerSettings.maxHeaderListSize
    guard headers.readableBytes <= limit else {
      stream.fail(
        RPCError(
          code: .resourceExhausted,
          message: "request headers of \(headers.readableBytes) bytes exceed the server's limit of \(limit) bytes (MAX_HEADER_LIST_SIZE)"))
      return
    }
    switch self.machine.openStream(endStream: endStream) {
    case .success(let id):
      stream.streamID = id
      self.clientStreams[id] = stream
      FrameEncoder.encode(.headers(streamID: id, endStream: endStream, payload: headers), into: &self.outbound)
    case .failure(.goingAway):
      stream.fail(RPCError(code: .unavailable, message: "connection is draining (GOAWAY); the call was not sent, safe to retry"))
    case .failure(.tooManyStreams(let limit)):
      stream.fail(RPCError(code: .resourceExhausted, message: "the server's MAX_CONCURRENT_STREAMS (\(limit)) is reached on this connection"))
    case .failure(.streamIDsExhausted):
      self.status.markDraining()
      stream.fail(RPCError(code: .unavailable, message: "stream ids exhausted on this connection; the call was not sent, safe to retry"))
    }
  }

  func receivedHeaders(id: UInt32, _ headers: ResponseHeaders) {
    guard let stream = self.clientStreams[id] else { return }
    guard let encoding = MessageEncoding(headerValue: headers.messageEncoding) else {
      self.clientFail(id: id, RPCError(code: .internalError, message: "server used unknown message encoding \"\(headers.messageEncoding.prefix(64))\""))
      return
    }
    // Only what our SETTINGS ACCEPT_ENCODINGS offered may come back (docs/protocol.md §7.3).
    guard self.config.settings.acceptEncodings.contains(encoding.bit) else {
      self.clientFail(
        id: id,
        RPCError(code: .internalError, message: "server used message encoding \"\(encoding.rawValue)\", which this client's ACCEPT_ENCODINGS does not include"))
      return
    }
    switch WireMapping.metadata(headers.metadata) {
    case .success(let md):
      self.inboundEncodings[id] = encoding
      stream.push(.metadata(md), credit: 0)
    case .failure(let error):
      self.clientFail(id: id, error)
    }
  }

  func receivedMessage(id: UInt32, _ bytes: ByteBuffer, compressed: Bool, credit: Int) {
    guard let stream = self.clientStreams[id] else { return }
    switch self.decompressInbound(id: id, bytes, compressed: compressed) {
    case .success(let message): stream.push(.message(FramedBytes(message)), credit: credit)
    case .failure(let error): self.clientFail(id: id, error)
    }
  }

  func receivedCallTrailers(id: UInt32, _ trailers: Trailers) {
    self.inboundEncodings.removeValue(forKey: id)
    self.deadlineTimers.removeValue(forKey: id)?.cancel()
    guard let stream = self.clientStreams.removeValue(forKey: id) else { return }
    stream.releaseQueued()  // the machine dropped any request output still queued
    let (status, metadata) = WireMapping.status(from: trailers)
    stream.statusCode = status.code
    stream.push(.status(status, metadata), credit: 0)
    stream.finish()
    self.closeIfDrained()
  }

  /// Fails a call locally and tells the server to stop.
  func clientFail(id: UInt32, _ error: RPCError) {
    if let rst = self.machine.resetStream(streamID: id, code: .cancel) {
      FrameEncoder.encode(rst, into: &self.outbound)
    }
    self.streamGone(id: id, error: error)
  }

  /// Client: close politely once idle.
  func clientClose() {
    guard !self.closing else { return }
    if self.machine.openStreamCount == 0 {
      FrameEncoder.encode(self.machine.closeGracefully(), into: &self.outbound)
      self.closeAfterFlush(reason: "client closed")
    } else {
      _ = self.machine.closeGracefully()
      self.status.markDraining()
    }
  }
}
