import FramedWire
import GRPCCore
import NIOCore

/// Inbound frames: each goes to its own event of the state machine, and each result is
/// performed here. Writes land in `outbound`; `channelReadComplete` flushes them.
extension FramedConnectionHandler {
  func receive(_ frame: Frame, now: NIODeadline) {
    switch frame {
    case .settings(let entries):
      switch self.machine.receiveSettings(entries) {
      case .ready:
        self.handshakeTimer?.cancel()
        self.status.markReady(peerSettings: self.machine.peerSettings)
      case .connectionError(let failure):
        self.failConnection(failure)
      }
    case .ping(let ack, let opaque):
      switch self.machine.receivePing(ack: ack, opaque: opaque, now: now) {
      case .reply(let frame):
        self.write([frame])
      case .acknowledged(let opaque):
        self.keepalive?.ackReceived(opaque: opaque, at: .now())
        self.receivedPingAck(opaque: opaque)
      case .connectionError(let failure):
        self.failConnection(failure)
      }
    case .goAway(let last, let code, let debug):
      switch self.machine.receiveGoAway(lastStreamID: last, code: code, debug: debug) {
      case .goingAway(let last, let code, let debug, let refused):
        self.receivedGoAway(lastStreamID: last, code: code, debug: debug, refused: refused)
      case .connectionError(let failure):
        self.failConnection(failure)
      }
    case .windowUpdate(let id, let increment):
      switch self.machine.receiveWindowUpdate(streamID: id, increment: increment) {
      case .windowOpened, .ignored:
        break  // flush() at the end of the read burst writes whatever is now allowed
      case .streamError(let failure):
        self.streamFailed(failure)
      case .connectionError(let failure):
        self.failConnection(failure)
      }
    case .unknownExtension:
      if let failure = self.machine.receiveExtension() { self.failConnection(failure) }
    case .headers(let id, let endStream, let payload):
      self.receiveHeaders(streamID: id, endStream: endStream, payload: payload)
    case .message(let id, let flags, let payload):
      self.receiveMessage(streamID: id, flags: flags, payload: payload)
    case .trailers(let id, let payload):
      switch self.machine.receiveTrailers(streamID: id, payload: payload) {
      case .trailers(let id, let trailers):
        self.receivedTrailers(id: id, trailers)
      case .ignored:
        break
      case .connectionError(let failure):
        self.failConnection(failure)
      }
    case .rst(let id, let code):
      switch self.machine.receiveReset(streamID: id, code: code) {
      case .reset(let id, let code):
        self.streamGone(id: id, error: WireMapping.status(forReset: code))
      case .ignored:
        break
      case .connectionError(let failure):
        self.failConnection(failure)
      }
    }
  }

  private func receiveHeaders(streamID id: UInt32, endStream: Bool, payload: ByteBuffer) {
    switch self.machine.receiveHeaders(streamID: id, endStream: endStream, payload: payload) {
    case .request(let id, let headers, let endStream):
      self.openRequestStream(id: id, headers: headers, endStream: endStream)
    case .response(let id, let headers):
      self.receivedResponseHeaders(id: id, headers)
    case .refused(let rst):
      self.write([rst])
    case .ignored:
      break
    case .streamError(let failure):
      self.streamFailed(failure)
    case .connectionError(let failure):
      self.failConnection(failure)
    }
  }

  private func receiveMessage(streamID id: UInt32, flags: FrameFlags, payload: ByteBuffer) {
    switch self.machine.receiveMessage(streamID: id, flags: flags, payload: payload) {
    case .buffered(let write):
      self.write(write)
    case .message(let message, let write):
      self.write(write)
      self.received(message)
    case .endOfRequest(let id, let write):
      self.write(write)
      self.receivedEndOfRequest(id: id)
    case .holdingCredit(let id, let write):
      self.write(write)
      self.requestPromptCredit(id: id)
    case .tooLarge(let id, let size, let write):
      self.write(write)
      self.receivedOversizedMessage(id: id, size: size)
    case .streamError(let failure):
      self.streamFailed(failure)
    case .connectionError(let failure):
      self.failConnection(failure)
    }
  }

  /// A stream error of ours: its RST goes out and its call fails INTERNAL.
  private func streamFailed(_ failure: StreamFailure) {
    self.write(failure.write)
    self.streamGone(id: failure.streamID, error: RPCError(code: .internalError, message: failure.error.reason))
  }

  /// Control frames go straight to the output buffer, ahead of queued messages.
  private func write(_ frames: [Frame]) {
    for f in frames { FrameEncoder.encode(f, into: &self.outbound) }
  }

  /// The peer sent GOAWAY: during the handshake a refusal (close, saying why); after it, the
  /// calls it never processed fail as safe to retry and the connection closes once idle.
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
}
