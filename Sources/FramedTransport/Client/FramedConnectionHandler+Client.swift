import FramedWire
import GRPCCore
import NIOCore
import WireProtos

extension FramedConnectionHandler {
  func clientOpen(_ handle: any StreamHandle, headers: ByteBuffer, endStream: Bool) {
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

  func clientReceivedHeaders(id: UInt32, _ headers: ResponseHeaders) {
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

  func clientReceivedMessage(id: UInt32, _ bytes: ByteBuffer, compressed: Bool, credit: Int) {
    guard let stream = self.clientStreams[id] else { return }
    switch self.decompressInbound(id: id, bytes, compressed: compressed) {
    case .success(let message): stream.push(.message(FramedBytes(message)), credit: credit)
    case .failure(let error): self.clientFail(id: id, error)
    }
  }

  func clientReceivedTrailers(id: UInt32, _ trailers: Trailers) {
    self.inboundEncodings.removeValue(forKey: id)
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

  func receivedGoAway(lastStreamID: UInt32, code: WireErrorCode, debug: String, refused: [UInt32]) {
    if !self.machine.peerSettingsReceived {
      // Refused during the handshake (e.g. UNSUPPORTED_VERSION): say why.
      self.closeAfterFlush(reason: "peer refused the connection: GOAWAY \(code) \"\(debug)\"")
      return
    }
    self.status.markDraining()
    for id in refused {
      self.streamGone(id: id, error: RPCError(code: .unavailable, message: "server is going away (GOAWAY \(code)); the call was not processed, safe to retry"))
    }
    // Client: close once the remaining calls finish. Server: a client closing politely sends
    // no new streams, so the same rule applies.
    self.closeIfDrained()
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
