import DequeModule
import NIOCore
import WireProtos
import SwiftProtobuf

/// The protocol logic of one framed-wire connection, with no I/O inside.
///
/// The NIO handler feeds it what the peer sent, one event at a time (`receivePreface`,
/// `receiveSettings`, `receiveHeaders`, …, see ConnectionStateMachine+Receive.swift), and
/// commands from calls (`openStream`, `queue`, …); each event answers with a small result enum
/// of its own saying what the handler must do. It owns stream lifecycle, both directions of
/// flow control, limits and the GOAWAY drain; the handler owns sockets, timers and the bridge
/// to async code. Every rule of docs/protocol.md that can be checked without a clock or a
/// socket lives here, so the tests drive it event by event.
package struct ConnectionStateMachine: Sendable {
  package enum Role: Sendable { case client, server }

  /// How far the handshake got (docs/protocol.md §2.3).
  package enum Handshake: Sendable, Equatable {
    /// Nothing valid from the peer yet.
    case awaitingPreface
    /// The peer's preface arrived; its SETTINGS frame must come next.
    case awaitingSettings
    /// The peer's SETTINGS arrived: the connection is usable.
    case complete
  }

  /// The GOAWAY we sent, if any (docs/protocol.md §11).
  package enum LocalGoAway: Sendable, Equatable {
    case none
    /// Server, drain phase one: GOAWAY(2^31−1) and its PING went out; HEADERS in flight are
    /// still admitted.
    case draining
    /// A GOAWAY naming the last stream we process: the drain's final one, a client's closing
    /// one, or the answer to a connection error.
    case sent(lastStreamID: UInt32)
  }

  package let role: Role
  package let localSettings: ConnectionSettings
  package internal(set) var peerSettings = ConnectionSettings.defaults
  package internal(set) var handshake = Handshake.awaitingPreface
  package internal(set) var localGoAway = LocalGoAway.none
  /// Last stream id in the GOAWAY we received, if any.
  package internal(set) var goAwayReceived: UInt32?

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
  /// Ping policy (server) — counts pings from a peer with nothing in flight.
  package var pingPolicy = PingPolicy()

  package init(role: Role, localSettings: ConnectionSettings) {
    self.role = role
    self.localSettings = localSettings
    self.connectionSendWindow = ConnectionSettings.defaults.initialConnectionWindow
    self.connectionReceiveWindow = ReceiveWindow(initial: localSettings.initialConnectionWindow)
  }

  /// The peer's preface arrived.
  package var peerPrefaceReceived: Bool { self.handshake != .awaitingPreface }
  /// The peer's SETTINGS arrived.
  package var peerSettingsReceived: Bool { self.handshake == .complete }
  /// Last stream id in the GOAWAY we sent: 2^31−1 during a drain's first phase.
  package var goAwaySent: UInt32? {
    switch self.localGoAway {
    case .none: return nil
    case .draining: return WireLimits.maxStreamID
    case .sent(let last): return last
    }
  }
  /// Open streams.
  package var openStreamCount: Int { self.streams.count }
  /// The peer can no longer open (server) or we can no longer open (client) new streams here.
  package var isGoingAway: Bool { self.localGoAway != .none || self.goAwayReceived != nil }
  /// Whether the connection ends as soon as no stream is left. Client: after any GOAWAY, sent
  /// or received. Server: only after its own final GOAWAY (§11.2) — the first one of a drain
  /// still admits HEADERS in flight, and a client's GOAWAY changes nothing (§11.4).
  package var closesWhenIdle: Bool {
    switch self.role {
    case .client: return self.isGoingAway
    case .server:
      if case .sent = self.localGoAway { return true }
      return false
    }
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

  /// Whether `id` belongs to a stream that was opened at some point (it may be closed now).
  func isKnownStreamID(_ id: UInt32) -> Bool {
    id % 2 == 1 && id <= self.highestStreamID
  }

  mutating func removeIfDone(_ id: UInt32) {
    guard let s = self.streams[id], s.isDone else { return }
    self.streams.removeValue(forKey: id)
  }

  mutating func fail(_ code: WireErrorCode, _ reason: String) -> ConnectionFailure {
    self.connectionError(ConnectionError(code, reason))
  }

  /// Builds the GOAWAY for a connection error (none from a client that received one: it never
  /// answers GOAWAY with GOAWAY, §11.3).
  package mutating func connectionError(_ error: ConnectionError) -> ConnectionFailure {
    let last = self.role == .server ? self.highestStreamID : 0
    if self.role == .client, self.goAwayReceived != nil { return ConnectionFailure(error: error, goAway: nil) }
    self.localGoAway = .sent(lastStreamID: min(self.goAwaySent ?? last, last))
    return ConnectionFailure(error: error, goAway: .goAway(lastStreamID: last, code: error.code, debug: error.reason))
  }

  /// Ends one stream with RST(code); `alsoWrite` goes first (credit already owed).
  mutating func failStream(_ id: UInt32, _ code: WireErrorCode, _ reason: String, alsoWrite: [Frame] = []) -> StreamFailure {
    self.streams.removeValue(forKey: id)
    self.ready.removeAll { $0 == id }
    return StreamFailure(error: StreamError(id, code, reason), write: alsoWrite + [.rst(streamID: id, code: code)])
  }
}

/// A connection error: write `goAway` (if any) and close.
package struct ConnectionFailure: Sendable, Equatable, Error {
  package var error: ConnectionError
  package var goAway: Frame?
}

/// A stream error of ours: the stream is gone; write `write` (its RST last).
package struct StreamFailure: Sendable, Equatable {
  package var error: StreamError
  package var write: [Frame]
  package var streamID: UInt32 { self.error.streamID }
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
