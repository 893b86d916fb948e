import NIOCore

/// Server-side defence against ping floods (docs/protocol.md §9): while nothing is in flight a
/// peer may ping at most once per `minimumInterval`; each early ping is a strike, and
/// `maxStrikes` strikes end the connection with GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings").
/// Any stream activity clears the strikes, so busy well-behaved clients are never punished.
package struct PingPolicy: Sendable, Hashable {
  package var minimumInterval: TimeAmount = .seconds(10)
  package var maxStrikes = 2
  package private(set) var strikes = 0
  private var lastPing: NIODeadline?

  package init() {}

  /// Stream frames were sent or received.
  package mutating func streamActivity() { self.strikes = 0 }

  /// Records a ping; `false` means the peer is out of strikes.
  package mutating func receivedPing(at now: NIODeadline, hasActiveStreams: Bool) -> Bool {
    defer { self.lastPing = now }
    if hasActiveStreams {
      self.strikes = 0
      return true
    }
    if let last = self.lastPing, now - last < self.minimumInterval {
      self.strikes += 1
      return self.strikes < self.maxStrikes
    }
    return true
  }
}

/// Client keepalive: ping after `interval` without receiving anything; the connection is dead
/// if no ACK arrives within `timeout`.
package struct KeepaliveState: Sendable, Hashable {
  package var interval: TimeAmount
  package var timeout: TimeAmount
  package private(set) var lastReceived: NIODeadline
  package private(set) var outstandingPing: (opaque: UInt64, sentAt: NIODeadline)?

  package init(interval: TimeAmount = .seconds(30), timeout: TimeAmount = .seconds(10), now: NIODeadline) {
    self.interval = interval
    self.timeout = timeout
    self.lastReceived = now
  }

  package static func == (a: Self, b: Self) -> Bool {
    a.interval == b.interval && a.timeout == b.timeout && a.lastReceived == b.lastReceived
      && a.outstandingPing?.opaque == b.outstandingPing?.opaque
  }
  package func hash(into h: inout Hasher) { h.combine(self.lastReceived) }

  package enum Tick: Sendable, Equatable {
    case nothing
    case sendPing(UInt64)
    case dead
  }

  /// Anything arrived from the peer.
  package mutating func received(at now: NIODeadline) { self.lastReceived = now }

  /// A PING ACK arrived.
  package mutating func ackReceived(opaque: UInt64, at now: NIODeadline) {
    if self.outstandingPing?.opaque == opaque { self.outstandingPing = nil }
    self.lastReceived = now
  }

  /// Called periodically by the handler's timer.
  package mutating func tick(now: NIODeadline, nextOpaque: UInt64) -> Tick {
    if let ping = self.outstandingPing {
      return now - ping.sentAt >= self.timeout ? .dead : .nothing
    }
    guard now - self.lastReceived >= self.interval else { return .nothing }
    self.outstandingPing = (nextOpaque, now)
    return .sendPing(nextOpaque)
  }
}
