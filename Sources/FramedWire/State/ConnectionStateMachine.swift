import DequeModule
import NIOCore
import WireProtos
import SwiftProtobuf

/// The protocol logic of one framed-wire connection, with no I/O inside.
///
/// The NIO handler feeds it decoded items (`receive`) and commands from calls (`openStream`,
/// `queueMessage`, …) and performs the actions it returns. It owns stream lifecycle, both
/// directions of flow control, limits and the GOAWAY drain; the handler owns sockets, timers and
/// the bridge to async code. Every rule of docs/protocol.md that can be checked without a clock
/// or a socket lives here, so the tests drive it frame by frame.
package struct ConnectionStateMachine: Sendable {
  package enum Role: Sendable { case client, server }

  /// What the handler must do after an inbound item.
  package enum Action: Sendable {
    case none
    /// The peer's SETTINGS arrived: the connection is usable.
    case ready
    /// Write these frames (PING ACK, WINDOW_UPDATE, RST, GOAWAY).
    case write([Frame])
    /// Server: a new request stream.
    case requestHeaders(streamID: UInt32, RequestHeaders, endStream: Bool)
    /// Client: response headers.
    case responseHeaders(streamID: UInt32, ResponseHeaders)
    /// A complete message; `credit` bytes are returned to the peer once it is consumed.
    case message(streamID: UInt32, ByteBuffer, compressed: Bool, credit: Int, endStream: Bool, alsoWrite: [Frame])
    /// Server: the client half-closed without a message.
    case endOfRequest(streamID: UInt32)
    /// Client: the call finished with these trailers.
    case trailers(streamID: UInt32, Trailers)
    /// The peer reset the stream.
    case peerReset(streamID: UInt32, code: WireErrorCode)
    /// A stream error of ours: the stream is gone, RST written (part of `write`).
    case streamFailed(streamID: UInt32, StreamError, write: [Frame])
    /// A message was over our MAX_MESSAGE_SIZE. Server: answer RESOURCE_EXHAUSTED trailers.
    /// Client: the stream is gone (RST in `alsoWrite`); fail the call RESOURCE_EXHAUSTED.
    case messageTooLarge(streamID: UInt32, size: Int, alsoWrite: [Frame])
    /// A PING ACK for one of ours.
    case pingAck(opaque: UInt64)
    /// The peer sent GOAWAY: streams above `lastStreamID` were never processed.
    case goAway(lastStreamID: UInt32, code: WireErrorCode, debug: String, refusedStreams: [UInt32])
    /// A fragment's credit is held until the reader consumes what is queued: the reader must
    /// report consumption promptly (not in batches) so the message can complete.
    case holdingFragmentCredit(streamID: UInt32, alsoWrite: [Frame])
    /// Send window grew: pending sends may proceed.
    case windowOpened
    /// A connection error: write GOAWAY and close.
    case connectionError(ConnectionError, write: Frame?)
  }

  package let role: Role
  package let localSettings: ConnectionSettings
  package internal(set) var peerSettings = ConnectionSettings.defaults
  package internal(set) var peerPrefaceReceived = false
  package internal(set) var peerSettingsReceived = false

  /// Open streams by id. A stream is taken out (`removeValue`) while it is mutated and put back
  /// after, so its buffers are never shared with the dictionary's copy (no copy-on-write of
  /// queued messages or a half-assembled message on every frame).
  package internal(set) var streams: [UInt32: StreamState] = [:]
  /// Server: highest client stream id seen. Client: last id we assigned.
  package internal(set) var highestStreamID: UInt32 = 0
  var connectionSendWindow: Int
  var connectionReceiveWindow: ReceiveWindow
  /// Streams with something to send and credit to send it, in round-robin order.
  var ready: Deque<UInt32> = []

  /// Last stream id in the GOAWAY we sent, if any.
  package internal(set) var goAwaySent: UInt32?
  /// Last stream id in the GOAWAY we received, if any.
  package internal(set) var goAwayReceived: UInt32?
  /// Ping policy (server) — counts pings from a peer with nothing in flight.
  package var pingPolicy = PingPolicy()

  package init(role: Role, localSettings: ConnectionSettings) {
    self.role = role
    self.localSettings = localSettings
    self.connectionSendWindow = ConnectionSettings.defaults.initialConnectionWindow
    self.connectionReceiveWindow = ReceiveWindow(initial: localSettings.initialConnectionWindow)
  }

  /// Open streams.
  package var openStreamCount: Int { self.streams.count }
  /// The peer can no longer open (server) or we can no longer open (client) new streams here.
  package var isGoingAway: Bool { self.goAwaySent != nil || self.goAwayReceived != nil }
  /// Whether the connection ends as soon as no stream is left. Client: after any GOAWAY, sent
  /// or received. Server: only after its own final GOAWAY (§11.2) — the first one of a drain
  /// still admits HEADERS in flight, and a client's GOAWAY changes nothing (§11.4).
  package var closesWhenIdle: Bool {
    switch self.role {
    case .client: return self.isGoingAway
    case .server: return self.goAwaySent.map { $0 != WireLimits.maxStreamID } ?? false
    }
  }

  // MARK: - Inbound

  /// Processes one decoded item from the peer. `now` feeds the ping policy.
  package mutating func receive(_ item: DecodedItem, now: NIODeadline) -> Action {
    switch item {
    case .preface:
      guard !self.peerPrefaceReceived else { return self.fail(.protocolError, "second preface") }
      self.peerPrefaceReceived = true
      return .none
    case .frame(let frame):
      guard self.peerSettingsReceived else {
        if self.role == .client, case .goAway(let last, let code, let debug) = frame {
          return self.receiveGoAway(lastStreamID: last, code: code, debug: debug)
        }
        guard case .settings(let entries) = frame else {
          return self.fail(.protocolError, "first frame must be SETTINGS, got \(frame.kindName)")
        }
        do {
          self.peerSettings = try ConnectionSettings.decode(entries)
        } catch {
          return self.connectionError(error)
        }
        self.peerSettingsReceived = true
        // Connection send credit is what the peer says it accepts.
        self.connectionSendWindow = self.peerSettings.initialConnectionWindow
        return .ready
      }
      return self.receiveFrame(frame, now: now)
    }
  }

  private mutating func receiveFrame(_ frame: Frame, now: NIODeadline) -> Action {
    switch frame {
    case .headers, .message, .trailers: self.pingPolicy.streamActivity()
    default: break
    }
    switch frame {
    case .settings:
      return self.fail(.protocolError, "SETTINGS sent twice")
    case .ping(let ack, let opaque):
      if ack { return .pingAck(opaque: opaque) }
      if self.role == .server,
        !self.pingPolicy.receivedPing(at: now, hasActiveStreams: !self.streams.isEmpty)
      {
        return self.fail(.enhanceYourCalm, "too_many_pings")
      }
      return .write([.ping(ack: true, opaque: opaque)])
    case .goAway(let last, let code, let debug):
      return self.receiveGoAway(lastStreamID: last, code: code, debug: debug)
    case .windowUpdate(let id, let increment):
      return self.receiveWindowUpdate(streamID: id, increment: increment)
    case .unknownExtension:
      return .none
    case .headers(let id, let endStream, let payload):
      if self.role == .client {
        guard !endStream else { return self.fail(.protocolError, "END_STREAM on server HEADERS") }
        return self.receiveResponseHeaders(streamID: id, payload: payload)
      }
      return self.receiveRequestHeaders(streamID: id, endStream: endStream, payload: payload)
    case .message(let id, let flags, let payload):
      return self.receiveMessage(streamID: id, flags: flags, payload: payload)
    case .trailers(let id, let payload):
      return self.receiveTrailers(streamID: id, payload: payload)
    case .rst(let id, let code):
      guard self.isKnownStreamID(id) else { return self.fail(.protocolError, "RST on idle stream \(id)") }
      guard self.streams.removeValue(forKey: id) != nil else { return .none }
      return .peerReset(streamID: id, code: code)
    }
  }

  /// Whether `id` belongs to a stream that was opened at some point (it may be closed now).
  private func isKnownStreamID(_ id: UInt32) -> Bool {
    id % 2 == 1 && id <= self.highestStreamID
  }

  private mutating func receiveRequestHeaders(streamID id: UInt32, endStream: Bool, payload: ByteBuffer) -> Action {
    guard id % 2 == 1 else { return self.fail(.protocolError, "client opened even stream id \(id)") }
    // Ids are consecutive (1, 3, 5, …), so "never opened" is simply "above the highest id".
    let expected = self.highestStreamID == 0 ? 1 : self.highestStreamID + 2
    guard id == expected else {
      return self.fail(.protocolError, "HEADERS on stream \(id); the next stream id must be \(expected)")
    }
    self.highestStreamID = id
    if let last = self.goAwaySent, id > last {
      return .write([.rst(streamID: id, code: .refusedStream)])
    }
    guard self.streams.count < self.localSettings.maxConcurrentStreams else {
      return .write([.rst(streamID: id, code: .refusedStream)])
    }
    let headers: RequestHeaders
    do {
      headers = try RequestHeaders(serializedBytes: Array(payload.readableBytesView))
    } catch {
      return .write([.rst(streamID: id, code: .protocolError)])
    }
    var stream = self.makeStream(id)
    stream.remoteClosed = endStream
    self.streams[id] = stream
    return .requestHeaders(streamID: id, headers, endStream: endStream)
  }

  private mutating func receiveResponseHeaders(streamID id: UInt32, payload: ByteBuffer) -> Action {
    guard id % 2 == 1, id <= self.highestStreamID else {
      return self.fail(.protocolError, "HEADERS on stream \(id) the client never opened")
    }
    guard var stream = self.streams.removeValue(forKey: id) else { return .none }
    guard !stream.headersExchanged else { return self.failStream(id, .protocolError, "second response HEADERS") }
    let headers: ResponseHeaders
    do {
      headers = try ResponseHeaders(serializedBytes: Array(payload.readableBytesView))
    } catch {
      return self.failStream(id, .protocolError, "undecodable response HEADERS")
    }
    stream.headersExchanged = true
    self.streams[id] = stream
    return .responseHeaders(streamID: id, headers)
  }

  private mutating func receiveMessage(streamID id: UInt32, flags: FrameFlags, payload: ByteBuffer) -> Action {
    guard self.isKnownStreamID(id) else { return self.fail(.protocolError, "MESSAGE on idle stream \(id)") }
    if self.role == .client, flags.contains(.endStream) || flags.contains(.noMessage) {
      return self.fail(.protocolError, "END_STREAM or NO_MESSAGE on a server MESSAGE")
    }
    let bytes = payload.readableBytes
    guard self.connectionReceiveWindow.receive(bytes) else {
      return self.fail(.flowControlError, "connection window overrun by \(bytes) bytes")
    }
    // Connection credit returns as soon as bytes are in a stream's buffer (or dropped), so a
    // stalled stream never starves the others.
    var write: [Frame] = []
    if let inc = self.connectionReceiveWindow.release(bytes) { write.append(.windowUpdate(streamID: 0, increment: inc)) }

    guard var stream = self.streams.removeValue(forKey: id) else { return write.isEmpty ? .none : .write(write) }
    if stream.remoteClosed {
      return self.failStream(id, .streamClosed, "MESSAGE after END_STREAM", alsoWrite: write)
    }
    guard stream.receiveWindow.receive(bytes) else {
      return self.failStream(id, .flowControlError, "stream window overrun by \(bytes) bytes", alsoWrite: write)
    }
    if self.role == .client, !stream.headersExchanged {
      return self.failStream(id, .protocolError, "MESSAGE before response HEADERS", alsoWrite: write)
    }
    let endStream = flags.contains(.endStream)
    if endStream { stream.remoteClosed = true }
    if flags.contains(.noMessage) {
      if stream.assembler.isAssembling {
        return self.failStream(id, .protocolError, "half-close in the middle of a message", alsoWrite: write)
      }
      self.streams[id] = stream
      self.removeIfDone(id)
      return .endOfRequest(streamID: id)  // NO_MESSAGE is client-only (END_STREAM is checked above)
    }
    switch stream.assembler.append(payload, flags: flags) {
    case .incomplete:
      // Fragment credit returns at once while nothing complete waits to be read, so a message
      // larger than the window cannot deadlock; otherwise it waits for the reader.
      if stream.unconsumedCredit == 0 {
        if let inc = stream.receiveWindow.release(bytes) { write.append(.windowUpdate(streamID: id, increment: inc)) }
      } else {
        stream.heldFragmentCredit += bytes
        self.streams[id] = stream
        return .holdingFragmentCredit(streamID: id, alsoWrite: write)
      }
      self.streams[id] = stream
      return write.isEmpty ? .none : .write(write)
    case .message(let message, let compressed):
      stream.unconsumedCredit += bytes
      self.streams[id] = stream
      self.removeIfDone(id)
      return .message(streamID: id, message, compressed: compressed, credit: bytes, endStream: endStream, alsoWrite: write)
    case .tooLarge(let size):
      self.streams[id] = stream
      if self.role == .server {
        return .messageTooLarge(streamID: id, size: size, alsoWrite: write)
      }
      self.streams.removeValue(forKey: id)
      self.ready.removeAll { $0 == id }
      return .messageTooLarge(streamID: id, size: size, alsoWrite: write + [.rst(streamID: id, code: .cancel)])
    case .inconsistentFlags:
      return self.failStream(id, .protocolError, "COMPRESSED differs between fragments", alsoWrite: write)
    }
  }

  private mutating func receiveTrailers(streamID id: UInt32, payload: ByteBuffer) -> Action {
    guard self.role == .client else { return self.fail(.protocolError, "TRAILERS from a client") }
    guard self.isKnownStreamID(id) else { return self.fail(.protocolError, "TRAILERS on idle stream \(id)") }
    guard let stream = self.streams.removeValue(forKey: id) else { return .none }
    self.ready.removeAll { $0 == id }
    if stream.assembler.isAssembling {
      var t = Trailers()
      t.code = 13
      t.message = "TRAILERS arrived in the middle of a response message"
      return .trailers(streamID: id, t)
    }
    let trailers: Trailers
    do {
      trailers = try Trailers(serializedBytes: Array(payload.readableBytesView))
    } catch {
      var t = Trailers()
      t.code = 13
      t.message = "undecodable TRAILERS from the server"
      return .trailers(streamID: id, t)
    }
    return .trailers(streamID: id, trailers)
  }

  private mutating func receiveWindowUpdate(streamID id: UInt32, increment: UInt32) -> Action {
    if id == 0 {
      guard increment > 0 else { return self.fail(.protocolError, "WINDOW_UPDATE of 0 on the connection") }
      guard applyWindowIncrement(&self.connectionSendWindow, increment) else {
        return self.fail(.flowControlError, "connection send window overflow")
      }
      return .windowOpened
    }
    guard self.isKnownStreamID(id) else { return self.fail(.protocolError, "WINDOW_UPDATE on idle stream \(id)") }
    guard var stream = self.streams.removeValue(forKey: id) else { return .none }
    guard increment > 0 else { return self.failStream(id, .protocolError, "WINDOW_UPDATE of 0") }
    guard applyWindowIncrement(&stream.sendWindow, increment) else {
      return self.failStream(id, .flowControlError, "stream send window overflow")
    }
    self.streams[id] = stream
    self.schedule(id)
    return .windowOpened
  }

  private mutating func receiveGoAway(lastStreamID last: UInt32, code: WireErrorCode, debug: String) -> Action {
    if let previous = self.goAwayReceived, last > previous {
      return self.fail(.protocolError, "GOAWAY raised last_stream_id from \(previous) to \(last)")
    }
    self.goAwayReceived = last
    var refused: [UInt32] = []
    if self.role == .client {
      for id in self.streams.keys where id > last { refused.append(id) }
      for id in refused { self.streams.removeValue(forKey: id) }
      self.ready.removeAll { $0 > last }
    }
    return .goAway(lastStreamID: last, code: code, debug: debug, refusedStreams: refused.sorted())
  }

  // MARK: - Helpers

  func makeStream(_ id: UInt32) -> StreamState {
    StreamState(
      id: id,
      sendWindow: self.peerSettings.initialStreamWindow,
      receiveWindow: self.localSettings.initialStreamWindow,
      maxMessageSize: self.localSettings.maxMessageSize
    )
  }

  mutating func removeIfDone(_ id: UInt32) {
    guard let s = self.streams[id], s.localClosed, s.remoteClosed, s.pending.isEmpty else { return }
    self.streams.removeValue(forKey: id)
  }

  private mutating func fail(_ code: WireErrorCode, _ reason: String) -> Action {
    self.connectionError(ConnectionError(code, reason))
  }

  /// Builds the GOAWAY for a connection error; the stream table is cleared.
  package mutating func connectionError(_ error: ConnectionError) -> Action {
    let last = self.role == .server ? self.highestStreamID : 0
    // A client that received GOAWAY just closes (never answers GOAWAY with GOAWAY).
    if self.role == .client, self.goAwayReceived != nil { return .connectionError(error, write: nil) }
    self.goAwaySent = min(self.goAwaySent ?? last, last)
    return .connectionError(error, write: .goAway(lastStreamID: last, code: error.code, debug: error.reason))
  }

  private mutating func failStream(_ id: UInt32, _ code: WireErrorCode, _ reason: String, alsoWrite: [Frame] = []) -> Action {
    self.streams.removeValue(forKey: id)
    self.ready.removeAll { $0 == id }
    return .streamFailed(streamID: id, StreamError(id, code, reason), write: alsoWrite + [.rst(streamID: id, code: code)])
  }
}

extension Frame {
  /// The frame's type; `nil` for an extension frame.
  public var type: FrameType? {
    switch self {
    case .settings: return .settings
    case .headers: return .headers
    case .message: return .message
    case .trailers: return .trailers
    case .rst: return .rst
    case .windowUpdate: return .windowUpdate
    case .ping: return .ping
    case .goAway: return .goAway
    case .unknownExtension: return nil
    }
  }

  /// The frame type's name, for error messages.
  public var kindName: String { self.type?.description ?? "EXTENSION" }
}
