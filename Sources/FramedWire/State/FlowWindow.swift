/// Credit-based flow-control bookkeeping for one direction of one stream or connection.
///
/// The receiving side owns a `ReceiveWindow`: it debits bytes as they arrive and decides when
/// returned credit is worth a WINDOW_UPDATE (at half the initial window, so updates are batched
/// rather than one per message). The sending side owns a plain `Int` of available credit.
package struct ReceiveWindow: Hashable, Sendable {
  /// Bytes the peer may still send.
  package private(set) var available: Int
  /// Credit consumed locally and not yet returned to the peer.
  package private(set) var pendingUpdate: Int = 0
  /// The window size the peer was told at the start.
  package let initial: Int

  package init(initial: Int) {
    self.initial = initial
    self.available = initial
  }

  /// Debits `bytes` arriving from the peer; `false` when the peer overran its credit.
  package mutating func receive(_ bytes: Int) -> Bool {
    guard bytes <= self.available else { return false }
    self.available -= bytes
    return true
  }

  /// Returns `bytes` of credit; yields the WINDOW_UPDATE increment to send, if one is due.
  package mutating func release(_ bytes: Int) -> UInt32? {
    self.pendingUpdate += bytes
    // Send once half the window is outstanding, so small messages don't cost a frame each.
    guard self.pendingUpdate >= max(1, self.initial / 2) else { return nil }
    let increment = self.pendingUpdate
    self.pendingUpdate = 0
    self.available += increment
    return UInt32(increment)
  }
}

/// Adds `increment` to a send window, failing on overflow past 2^31−1 (FLOW_CONTROL_ERROR).
@inlinable
package func applyWindowIncrement(_ window: inout Int, _ increment: UInt32) -> Bool {
  let next = window + Int(increment)
  guard next <= WireLimits.maxWindow else { return false }
  window = next
  return true
}
