import Synchronization

/// One timer for every open event stream: each gets its comment line on a shared beat rather
/// than from a sleeping task of its own, which thousands of open streams would each pay for
/// in memory. A stream's first heartbeat comes at most one interval after it opened.
final class Heartbeats: Sendable {
  private struct State {
    var streams: [ObjectIdentifier: StreamMailbox] = [:]
    /// Whether the timer task runs; it stops when the last stream goes.
    var running = false
  }
  private let state = Mutex(State())
  let interval: Duration

  init(interval: Duration) { self.interval = interval }

  func add(_ mailbox: StreamMailbox) {
    let start = self.state.withLock { s -> Bool in
      s.streams[ObjectIdentifier(mailbox)] = mailbox
      defer { s.running = true }
      return !s.running
    }
    if start { Task { await self.beat() } }
  }

  func remove(_ mailbox: StreamMailbox) {
    _ = self.state.withLock { $0.streams.removeValue(forKey: ObjectIdentifier(mailbox)) }
  }

  var count: Int { self.state.withLock { $0.streams.count } }

  private func beat() async {
    while true {
      try? await Task.sleep(for: self.interval)
      let streams = self.state.withLock { s -> [StreamMailbox]? in
        guard !s.streams.isEmpty else {
          s.running = false
          return nil
        }
        return Array(s.streams.values)
      }
      guard let streams else { return }
      for mailbox in streams { mailbox.ping() }
    }
  }
}
