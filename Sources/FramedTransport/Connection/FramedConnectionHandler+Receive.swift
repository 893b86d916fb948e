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
        if opaque == Self.drainPingOpaque { self.finishDrain() }
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
        self.clientReceivedTrailers(id: id, trailers)
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
      self.openServerStream(id: id, headers: headers, endStream: endStream)
    case .response(let id, let headers):
      self.clientReceivedHeaders(id: id, headers)
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
      switch self.role {
      case .server:
        self.serverReceivedMessage(
          id: message.streamID, message.bytes, compressed: message.compressed, credit: message.credit, endStream: message.endStream)
      case .client:
        self.clientReceivedMessage(id: message.streamID, message.bytes, compressed: message.compressed, credit: message.credit)
      }
    case .endOfRequest(let id, let write):
      self.write(write)
      self.serverStreams[id]?.finish()
    case .holdingCredit(let id, let write):
      self.write(write)
      self.serverStreams[id]?.requestPromptCredit()
      self.clientStreams[id]?.requestPromptCredit()
    case .tooLarge(let id, let size, let write):
      self.write(write)
      switch self.role {
      case .server:
        self.serverRejectOversized(id: id, size: size)
      case .client:
        let limit = self.config.settings.maxMessageSize
        self.streamGone(
          id: id,
          error: RPCError(
            code: .resourceExhausted,
            message: "response message of at least \(size) bytes exceeds the client's limit of \(limit) bytes (MAX_MESSAGE_SIZE)"))
      }
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
}
