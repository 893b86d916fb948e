import FramedWire
import NIOConcurrencyHelpers
import NIOCore

/// A connection's status as the rest of the transport sees it from outside the event loop:
/// its phase (handshaking, ready, draining or closed), the peer's SETTINGS, and how many calls
/// it carries. The connection's handler writes it on the loop; the pool and calls read it.
final class ConnectionStatus: Sendable {
  enum Phase: Sendable, Equatable { case handshaking, ready, draining, closed(String) }

  private struct State {
    var phase: Phase = .handshaking
    var peerSettings = ConnectionSettings.defaults
    var activeCalls = 0
    var readyWaiters: [CheckedContinuation<Void, any Error>] = []
  }
  private let state = NIOLockedValueBox(State())
  /// Called (off the lock) when the phase changes, e.g. so a pool can reconnect.
  let onChange: (@Sendable (Phase) -> Void)?

  init(onChange: (@Sendable (Phase) -> Void)? = nil) { self.onChange = onChange }

  var phase: Phase { self.state.withLockedValue { $0.phase } }
  var peerSettings: ConnectionSettings { self.state.withLockedValue { $0.peerSettings } }
  var activeCalls: Int { self.state.withLockedValue { $0.activeCalls } }
  var isUsable: Bool { self.state.withLockedValue { $0.phase == .ready } }

  /// Usable, with a free stream slot, and its calls: one lock for the pool's scan.
  var snapshot: (usable: Bool, room: Bool, calls: Int) {
    self.state.withLockedValue { s in
      (s.phase == .ready, s.phase == .ready && s.activeCalls < s.peerSettings.maxConcurrentStreams, s.activeCalls)
    }
  }

  /// Reserves a stream slot for a call if the connection is ready and has one.
  func tryStartCall() -> Bool {
    self.state.withLockedValue { s in
      guard s.phase == .ready, s.activeCalls < s.peerSettings.maxConcurrentStreams else { return false }
      s.activeCalls += 1
      return true
    }
  }

  func callEnded() { self.state.withLockedValue { $0.activeCalls -= 1 } }

  func markReady(peerSettings: ConnectionSettings) {
    let waiters = self.state.withLockedValue { s -> [CheckedContinuation<Void, any Error>] in
      guard s.phase == .handshaking else { return [] }
      s.phase = .ready
      s.peerSettings = peerSettings
      defer { s.readyWaiters = [] }
      return s.readyWaiters
    }
    for w in waiters { w.resume() }
    self.onChange?(.ready)
  }

  func markDraining() {
    let changed = self.state.withLockedValue { s -> Bool in
      guard s.phase == .ready || s.phase == .handshaking else { return false }
      s.phase = .draining
      return true
    }
    if changed { self.onChange?(.draining) }
  }

  func markClosed(reason: String) {
    let (waiters, changed) = self.state.withLockedValue { s -> ([CheckedContinuation<Void, any Error>], Bool) in
      if case .closed = s.phase { return ([], false) }
      s.phase = .closed(reason)
      defer { s.readyWaiters = [] }
      return (s.readyWaiters, true)
    }
    for w in waiters { w.resume(throwing: FramedTransportError.connectionClosed(reason)) }
    if changed { self.onChange?(.closed(reason)) }
  }

  /// Waits until the peer's SETTINGS arrived (or the connection failed).
  func waitUntilReady() async throws {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
      let result: Result<Void, any Error>? = self.state.withLockedValue { s in
        switch s.phase {
        case .ready: return .success(())
        case .draining: return .failure(FramedTransportError.connectionClosed("draining"))
        case .closed(let reason): return .failure(FramedTransportError.connectionClosed(reason))
        case .handshaking:
          s.readyWaiters.append(c)
          return nil
        }
      }
      if let result { c.resume(with: result) }
    }
  }
}

/// Transport-level failures (not call statuses).
public enum FramedTransportError: Error, Sendable, CustomStringConvertible {
  case connectionClosed(String)
  case noAddresses
  case alreadyListening
  case shutDown

  public var description: String {
    switch self {
    case .connectionClosed(let reason): return "connection closed: \(reason)"
    case .noAddresses: return "no addresses to connect to"
    case .alreadyListening: return "the server transport is already listening"
    case .shutDown: return "the transport has been shut down"
    }
  }
}
