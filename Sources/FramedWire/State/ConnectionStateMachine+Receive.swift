import NIOCore
import SwiftProtobuf
import WireProtos

/// The gRPC status codes the wire itself produces (docs/protocol.md §5.7); everything else
/// comes from the application.
package enum WireStatus {
  /// INTERNAL (13): what a malformed answer from the peer ends a call with.
  package static let internalError: UInt32 = 13
}

extension ConnectionStateMachine {
  /// After the peer's preface.
  package enum PrefaceResult: Sendable, Equatable {
    case accepted
    case connectionError(ConnectionFailure)
  }

  /// After the peer's SETTINGS.
  package enum SettingsResult: Sendable, Equatable {
    /// The handshake is complete: the connection is usable.
    case ready
    case connectionError(ConnectionFailure)
  }

  /// After a PING.
  package enum PingResult: Sendable, Equatable {
    /// Write this PING ACK.
    case reply(Frame)
    /// The ACK of one of our PINGs.
    case acknowledged(opaque: UInt64)
    case connectionError(ConnectionFailure)
  }

  /// After a GOAWAY.
  package enum GoAwayResult: Sendable, Equatable {
    /// The peer goes away. Client: `refusedStreams` (above `lastStreamID`) were never
    /// processed and are gone from the machine; their calls may be retried.
    case goingAway(lastStreamID: UInt32, code: WireErrorCode, debug: String, refusedStreams: [UInt32])
    case connectionError(ConnectionFailure)
  }

  /// After a WINDOW_UPDATE.
  package enum WindowUpdateResult: Sendable, Equatable {
    /// Send credit grew: pending sends may proceed.
    case windowOpened
    /// For a stream that is already gone.
    case ignored
    case streamError(StreamFailure)
    case connectionError(ConnectionFailure)
  }

  /// After HEADERS.
  package enum HeadersResult: Sendable, Equatable {
    /// Server: a new request stream.
    case request(streamID: UInt32, RequestHeaders, endStream: Bool)
    /// Client: the response HEADERS of an open call.
    case response(streamID: UInt32, ResponseHeaders)
    /// Server: the stream is not processed (draining, too many streams, undecodable); write
    /// this RST.
    case refused(Frame)
    /// Client: for a stream that is already gone.
    case ignored
    case streamError(StreamFailure)
    case connectionError(ConnectionFailure)
  }

  /// A complete message.
  package struct InboundMessage: Sendable, Equatable {
    package var streamID: UInt32
    package var bytes: ByteBuffer
    package var compressed: Bool
    /// Returned to the peer once the application consumed the message (`consumed`).
    package var credit: Int
    /// Server: the request's END_STREAM came with it.
    package var endStream: Bool
  }

  /// After a MESSAGE frame. `write` carries credit owed at once (WINDOW_UPDATE).
  package enum MessageResult: Sendable, Equatable {
    /// A fragment was stored, or the frame was for a stream that is gone.
    case buffered(write: [Frame])
    /// A whole message for the application.
    case message(InboundMessage, write: [Frame])
    /// Server: the client half-closed without a message.
    case endOfRequest(streamID: UInt32, write: [Frame])
    /// A fragment's credit is held until the reader consumes what is queued: the reader must
    /// report consumption promptly (not in batches) so the message can complete.
    case holdingCredit(streamID: UInt32, write: [Frame])
    /// A message over our MAX_MESSAGE_SIZE. Server: answer RESOURCE_EXHAUSTED trailers.
    /// Client: the stream is gone (its RST in `write`); fail the call RESOURCE_EXHAUSTED.
    case tooLarge(streamID: UInt32, size: Int, write: [Frame])
    case streamError(StreamFailure)
    case connectionError(ConnectionFailure)
  }

  /// After TRAILERS (client).
  package enum TrailersResult: Sendable, Equatable {
    /// The call is over with these trailers (INTERNAL ones if the server's were malformed).
    case trailers(streamID: UInt32, Trailers)
    /// For a stream that is already gone.
    case ignored
    case connectionError(ConnectionFailure)
  }

  /// After RST.
  package enum ResetResult: Sendable, Equatable {
    case reset(streamID: UInt32, code: WireErrorCode)
    /// For a stream that is already gone.
    case ignored
    case connectionError(ConnectionFailure)
  }

  // MARK: - Handshake

  package mutating func receivePreface() -> PrefaceResult {
    guard self.handshake == .awaitingPreface else { return .connectionError(self.fail(.protocolError, "second preface")) }
    self.handshake = .awaitingSettings
    return .accepted
  }

  package mutating func receiveSettings(_ entries: [SettingsEntry]) -> SettingsResult {
    guard self.handshake != .complete else { return .connectionError(self.fail(.protocolError, "SETTINGS sent twice")) }
    do {
      self.peerSettings = try ConnectionSettings.decode(entries)
    } catch {
      return .connectionError(self.connectionError(error))
    }
    self.handshake = .complete
    // Connection send credit is what the peer says it accepts.
    self.connectionSendWindow = self.peerSettings.initialConnectionWindow
    return .ready
  }

  /// Any frame but SETTINGS (and a client's GOAWAY) before the handshake completed.
  private mutating func beforeSettings(_ name: String) -> ConnectionFailure? {
    guard self.handshake != .complete else { return nil }
    return self.fail(.protocolError, "first frame must be SETTINGS, got \(name)")
  }

  // MARK: - Connection frames

  /// A PING; `now` feeds the server's ping policy.
  package mutating func receivePing(ack: Bool, opaque: UInt64, now: NIODeadline) -> PingResult {
    if let failure = self.beforeSettings("PING") { return .connectionError(failure) }
    if ack { return .acknowledged(opaque: opaque) }
    if self.role == .server, !self.pingPolicy.receivedPing(at: now, hasActiveStreams: !self.streams.isEmpty) {
      return .connectionError(self.fail(.enhanceYourCalm, "too_many_pings"))
    }
    return .reply(.ping(ack: true, opaque: opaque))
  }

  package mutating func receiveGoAway(lastStreamID last: UInt32, code: WireErrorCode, debug: String) -> GoAwayResult {
    // A server may refuse a client in place of its SETTINGS (§2.3 step 4).
    if self.role == .server, let failure = self.beforeSettings("GOAWAY") { return .connectionError(failure) }
    if let previous = self.goAwayReceived, last > previous {
      return .connectionError(self.fail(.protocolError, "GOAWAY raised last_stream_id from \(previous) to \(last)"))
    }
    self.goAwayReceived = last
    var refused: [UInt32] = []
    if self.role == .client {
      for id in self.streams.keys where id > last { refused.append(id) }
      for id in refused { self.streams.removeValue(forKey: id) }
      self.ready.removeAll { $0 > last }
    }
    return .goingAway(lastStreamID: last, code: code, debug: debug, refusedStreams: refused.sorted())
  }

  package mutating func receiveWindowUpdate(streamID id: UInt32, increment: UInt32) -> WindowUpdateResult {
    if let failure = self.beforeSettings("WINDOW_UPDATE") { return .connectionError(failure) }
    if id == 0 {
      guard increment > 0 else { return .connectionError(self.fail(.protocolError, "WINDOW_UPDATE of 0 on the connection")) }
      guard applyWindowIncrement(&self.connectionSendWindow, increment) else {
        return .connectionError(self.fail(.flowControlError, "connection send window overflow"))
      }
      return .windowOpened
    }
    guard self.isKnownStreamID(id) else { return .connectionError(self.fail(.protocolError, "WINDOW_UPDATE on idle stream \(id)")) }
    guard var stream = self.streams.removeValue(forKey: id) else { return .ignored }
    guard increment > 0 else { return .streamError(self.failStream(id, .protocolError, "WINDOW_UPDATE of 0")) }
    guard applyWindowIncrement(&stream.sendWindow, increment) else {
      return .streamError(self.failStream(id, .flowControlError, "stream send window overflow"))
    }
    self.streams[id] = stream
    self.schedule(id)
    return .windowOpened
  }

  /// A frame of a type this version does not define: ignored (§3.4).
  package mutating func receiveExtension() -> ConnectionFailure? {
    self.beforeSettings("EXTENSION")
  }

  // MARK: - Stream frames

  package mutating func receiveHeaders(streamID id: UInt32, endStream: Bool, payload: ByteBuffer) -> HeadersResult {
    if let failure = self.beforeSettings("HEADERS") { return .connectionError(failure) }
    self.pingPolicy.streamActivity()
    switch self.role {
    case .server: return self.receiveRequestHeaders(streamID: id, endStream: endStream, payload: payload)
    case .client:
      guard !endStream else { return .connectionError(self.fail(.protocolError, "END_STREAM on server HEADERS")) }
      return self.receiveResponseHeaders(streamID: id, payload: payload)
    }
  }

  private mutating func receiveRequestHeaders(streamID id: UInt32, endStream: Bool, payload: ByteBuffer) -> HeadersResult {
    guard id % 2 == 1 else { return .connectionError(self.fail(.protocolError, "client opened even stream id \(id)")) }
    // Ids are consecutive (1, 3, 5, …), so "never opened" is simply "above the highest id".
    let expected = self.highestStreamID == 0 ? 1 : self.highestStreamID + 2
    guard id == expected else {
      return .connectionError(self.fail(.protocolError, "HEADERS on stream \(id); the next stream id must be \(expected)"))
    }
    self.highestStreamID = id
    if let last = self.goAwaySent, id > last { return .refused(.rst(streamID: id, code: .refusedStream)) }
    guard self.streams.count < self.localSettings.maxConcurrentStreams else { return .refused(.rst(streamID: id, code: .refusedStream)) }
    let headers: RequestHeaders
    do {
      headers = try RequestHeaders(serializedBytes: Array(payload.readableBytesView))
    } catch {
      return .refused(.rst(streamID: id, code: .protocolError))
    }
    var stream = self.makeStream(id)
    if endStream { stream.phase.closeRemote() }
    self.streams[id] = stream
    return .request(streamID: id, headers, endStream: endStream)
  }

  private mutating func receiveResponseHeaders(streamID id: UInt32, payload: ByteBuffer) -> HeadersResult {
    guard id % 2 == 1, id <= self.highestStreamID else {
      return .connectionError(self.fail(.protocolError, "HEADERS on stream \(id) the client never opened"))
    }
    guard var stream = self.streams.removeValue(forKey: id) else { return .ignored }
    guard stream.phase.headers == .pending else { return .streamError(self.failStream(id, .protocolError, "second response HEADERS")) }
    let headers: ResponseHeaders
    do {
      headers = try ResponseHeaders(serializedBytes: Array(payload.readableBytesView))
    } catch {
      return .streamError(self.failStream(id, .protocolError, "undecodable response HEADERS"))
    }
    stream.phase.exchangeHeaders()
    self.streams[id] = stream
    return .response(streamID: id, headers)
  }

  package mutating func receiveMessage(streamID id: UInt32, flags: FrameFlags, payload: ByteBuffer) -> MessageResult {
    if let failure = self.beforeSettings("MESSAGE") { return .connectionError(failure) }
    self.pingPolicy.streamActivity()
    guard self.isKnownStreamID(id) else { return .connectionError(self.fail(.protocolError, "MESSAGE on idle stream \(id)")) }
    if self.role == .client, flags.contains(.endStream) || flags.contains(.noMessage) {
      return .connectionError(self.fail(.protocolError, "END_STREAM or NO_MESSAGE on a server MESSAGE"))
    }
    let bytes = payload.readableBytes
    guard self.connectionReceiveWindow.receive(bytes) else {
      return .connectionError(self.fail(.flowControlError, "connection window overrun by \(bytes) bytes"))
    }
    // Connection credit returns as soon as bytes are in a stream's buffer (or dropped), so a
    // stalled stream never starves the others.
    var write: [Frame] = []
    if let inc = self.connectionReceiveWindow.release(bytes) { write.append(.windowUpdate(streamID: 0, increment: inc)) }

    guard var stream = self.streams.removeValue(forKey: id) else { return .buffered(write: write) }
    if stream.phase.isRemoteClosed {
      return .streamError(self.failStream(id, .streamClosed, "MESSAGE after END_STREAM", alsoWrite: write))
    }
    guard stream.receiveWindow.receive(bytes) else {
      return .streamError(self.failStream(id, .flowControlError, "stream window overrun by \(bytes) bytes", alsoWrite: write))
    }
    if self.role == .client, stream.phase.headers == .pending {
      return .streamError(self.failStream(id, .protocolError, "MESSAGE before response HEADERS", alsoWrite: write))
    }
    let endStream = flags.contains(.endStream)
    if endStream { stream.phase.closeRemote() }
    if flags.contains(.noMessage) {
      if stream.assembler.isAssembling {
        return .streamError(self.failStream(id, .protocolError, "half-close in the middle of a message", alsoWrite: write))
      }
      self.streams[id] = stream
      self.removeIfDone(id)
      return .endOfRequest(streamID: id, write: write)  // NO_MESSAGE is client-only (checked above)
    }
    switch stream.assembler.append(payload, flags: flags) {
    case .incomplete:
      // Fragment credit returns at once while nothing complete waits to be read, so a message
      // larger than the window cannot deadlock; otherwise it waits for the reader.
      guard stream.unconsumedCredit == 0 else {
        stream.heldFragmentCredit += bytes
        self.streams[id] = stream
        return .holdingCredit(streamID: id, write: write)
      }
      if let inc = stream.receiveWindow.release(bytes) { write.append(.windowUpdate(streamID: id, increment: inc)) }
      self.streams[id] = stream
      return .buffered(write: write)
    case .message(let message, let compressed):
      stream.unconsumedCredit += bytes
      self.streams[id] = stream
      self.removeIfDone(id)
      let inbound = InboundMessage(streamID: id, bytes: message, compressed: compressed, credit: bytes, endStream: endStream)
      return .message(inbound, write: write)
    case .tooLarge(let size):
      switch self.role {
      case .server:
        // The handler answers with trailers; the stream stays until they are written.
        self.streams[id] = stream
        return .tooLarge(streamID: id, size: size, write: write)
      case .client:
        self.ready.removeAll { $0 == id }
        return .tooLarge(streamID: id, size: size, write: write + [.rst(streamID: id, code: .cancel)])
      }
    case .inconsistentFlags:
      return .streamError(self.failStream(id, .protocolError, "COMPRESSED differs between fragments", alsoWrite: write))
    }
  }

  package mutating func receiveTrailers(streamID id: UInt32, payload: ByteBuffer) -> TrailersResult {
    if let failure = self.beforeSettings("TRAILERS") { return .connectionError(failure) }
    self.pingPolicy.streamActivity()
    guard self.role == .client else { return .connectionError(self.fail(.protocolError, "TRAILERS from a client")) }
    guard self.isKnownStreamID(id) else { return .connectionError(self.fail(.protocolError, "TRAILERS on idle stream \(id)")) }
    guard let stream = self.streams.removeValue(forKey: id) else { return .ignored }
    self.ready.removeAll { $0 == id }
    guard !stream.assembler.isAssembling else {
      return .trailers(streamID: id, Self.internalTrailers("TRAILERS arrived in the middle of a response message"))
    }
    guard let trailers = try? Trailers(serializedBytes: Array(payload.readableBytesView)) else {
      return .trailers(streamID: id, Self.internalTrailers("undecodable TRAILERS from the server"))
    }
    return .trailers(streamID: id, trailers)
  }

  package mutating func receiveReset(streamID id: UInt32, code: WireErrorCode) -> ResetResult {
    if let failure = self.beforeSettings("RST") { return .connectionError(failure) }
    guard self.isKnownStreamID(id) else { return .connectionError(self.fail(.protocolError, "RST on idle stream \(id)")) }
    // A queued turn in the send rotation is skipped once the stream is gone.
    guard self.streams.removeValue(forKey: id) != nil else { return .ignored }
    return .reset(streamID: id, code: code)
  }

  private static func internalTrailers(_ message: String) -> Trailers {
    var t = Trailers()
    t.code = WireStatus.internalError
    t.message = message
    return t
  }
}
