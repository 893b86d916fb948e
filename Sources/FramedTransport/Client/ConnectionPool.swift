import GRPCCore
import NIOConcurrencyHelpers

/// The replicas' connections and the balancer that picks among them. Calls wait here while
/// replicas are still connecting; they fail fast with UNAVAILABLE when every replica is
/// failing (unless the call asked to wait for ready).
///
/// Each replica has one long-lived connection (its slot) and, when that one carries the
/// peer's MAX_CONCURRENT_STREAMS, up to `maxConnectionsPerReplica - 1` extra connections
/// opened on demand. So thousands of long-lived streams never wait for a stream slot, and a
/// short call that finds every connection full waits here, within its deadline, for one.
final class ConnectionPool: Sendable {
  enum Slot: Sendable {
    case idle
    case connecting
    case ready(ClientConnection)
    case transientFailure(String)
  }

  private struct State {
    var slots: [Slot]
    /// Per replica: the connections opened because the slot's was full.
    var extras: [[ClientConnection]]
    /// Per replica: an extra connection is being opened.
    var growing: [Bool]
    var balancer: LoadBalancer
    var waiters: [CheckedContinuation<Void, any Error>] = []
    var shutDown = false
    /// Bumped on every change, so a waiter that registers late doesn't miss one.
    var generation = 0
  }
  private let state: NIOLockedValueBox<State>
  private let gate: (any ReplicaGate)?
  private let maxConnectionsPerReplica: Int
  /// Per replica: asks the transport for one more connection.
  private let demand: [AsyncStream<Void>.Continuation]
  /// What the transport reads `demand` from, one per replica.
  let demands: [AsyncStream<Void>]

  init(count: Int, policy: LoadBalancingPolicy, gate: (any ReplicaGate)? = nil, maxConnectionsPerReplica: Int = 1) {
    self.state = NIOLockedValueBox(
      State(
        slots: Array(repeating: .idle, count: count), extras: Array(repeating: [], count: count),
        growing: Array(repeating: false, count: count), balancer: LoadBalancer(policy: policy)))
    self.gate = gate
    self.maxConnectionsPerReplica = max(1, maxConnectionsPerReplica)
    var streams: [AsyncStream<Void>] = []
    var continuations: [AsyncStream<Void>.Continuation] = []
    for _ in 0..<count {
      // One pending request is enough: `growing` allows one connect per replica at a time.
      let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
      streams.append(stream)
      continuations.append(continuation)
    }
    self.demands = streams
    self.demand = continuations
  }

  var isShutDown: Bool { self.state.withLockedValue { $0.shutDown } }

  /// Changes a slot (or, with `nil`, nothing) and wakes every waiter to look again.
  func update(_ index: Int?, _ body: (inout Slot) -> Void = { _ in }) {
    self.change { s in if let index { body(&s.slots[index]) } }
  }

  /// An extra connection to replica `index` is ready (or, with `nil`, could not be opened).
  func grew(_ index: Int, _ connection: ClientConnection?) {
    self.change { s in
      s.growing[index] = false
      if let connection { s.extras[index].append(connection) }
    }
  }

  /// An extra connection closed.
  func removeExtra(_ index: Int, _ connection: ClientConnection) {
    self.change { s in s.extras[index].removeAll { $0 === connection } }
  }

  /// A call ended: a waiter for a stream slot may go now. Cheap when nobody waits.
  func callEnded() {
    let waiters = self.state.withLockedValue { s -> [CheckedContinuation<Void, any Error>] in
      guard !s.waiters.isEmpty else { return [] }
      s.generation += 1
      defer { s.waiters = [] }
      return s.waiters
    }
    for w in waiters { w.resume() }
  }

  private func change(_ body: (inout State) -> Void) {
    let waiters = self.state.withLockedValue { s -> [CheckedContinuation<Void, any Error>] in
      body(&s)
      s.generation += 1
      defer { s.waiters = [] }
      return s.waiters
    }
    for w in waiters { w.resume() }
  }

  /// Marks the pool shut down and returns the live connections to close.
  func shutDown() -> [ClientConnection] {
    let (connections, waiters) = self.state.withLockedValue { s -> ([ClientConnection], [CheckedContinuation<Void, any Error>]) in
      s.shutDown = true
      s.generation += 1
      var c = s.slots.compactMap { slot -> ClientConnection? in
        if case .ready(let c) = slot { return c }
        return nil
      }
      c += s.extras.joined()
      defer { s.waiters = [] }
      return (c, s.waiters)
    }
    for d in self.demand { d.finish() }
    for w in waiters { w.resume(throwing: RPCError(code: .unavailable, message: "client transport is shutting down")) }
    return connections
  }

  /// A ready connection with a stream slot reserved for the call (`ConnectionStatus
  /// .tryStartCall`; the caller ends it with `callEnded`), and its replica's index.
  func pick(waitForReady: Bool, deadline: ContinuousClock.Instant? = nil) async throws -> (ClientConnection, Int) {
    while true {
      // A call cancelled (its deadline passed) while waiting for a replica stops waiting.
      try Task.checkCancellation()
      if let deadline, ContinuousClock.now >= deadline {
        throw RPCError(code: .deadlineExceeded, message: "deadline exceeded waiting for a connection with a free stream slot")
      }
      enum Step { case use(ClientConnection, Int), fail(RPCError, unreachable: [Int]), wait(Int, grow: [Int]) }
      let step: Step = self.state.withLockedValue { s in
        if s.shutDown { return .fail(RPCError(code: .unavailable, message: "client transport is shutting down"), unreachable: []) }
        var candidates: [(index: Int, load: Int)] = []
        var full: [Int] = []
        var anyConnecting = false
        var failures: [String] = []
        var failing: [Int] = []
        for (i, slot) in s.slots.enumerated() {
          switch slot {
          case .ready(let c):
            // No arrays here: this runs for every call.
            var usable = false
            var room = false
            var load = 0
            for connection in CollectionOfOne(c).chained(with: s.extras[i]) {
              let status = connection.status.snapshot
              guard status.usable else { continue }
              usable = true
              room = room || status.room
              load += status.calls
            }
            if !usable {
              anyConnecting = true
            } else if room {
              candidates.append((i, load))
            } else {
              full.append(i)
            }
          case .idle, .connecting: anyConnecting = true
          case .transientFailure(let reason):
            failures.append(reason)
            failing.append(i)
          }
        }
        var refused = 0
        while let index = s.balancer.pick(candidates) {
          // The gate (circuit breakers) has the last word on the replica the balancer chose.
          if case .ready(let primary) = s.slots[index], self.gate?.admit(replica: index) ?? true {
            // The primary connection while it has a slot; else the least loaded extra one.
            if primary.status.tryStartCall() { return .use(primary, index) }
            let extras = s.extras[index].sorted { $0.status.activeCalls < $1.status.activeCalls }
            if let c = extras.first(where: { $0.status.tryStartCall() }) { return .use(c, index) }
            // Filled up since the scan (calls reserve outside this lock's view of status).
            self.gate?.release(replica: index)
            full.append(index)
          } else {
            refused += 1
          }
          candidates.removeAll { $0.index == index }
        }
        if refused > 0 && full.isEmpty {
          // Failing fast is the point of an open breaker; waiting would hide it.
          return .fail(RPCError(code: .unavailable, message: "every reachable replica is failing (circuit open)"), unreachable: [])
        }
        if full.isEmpty && !anyConnecting && !waitForReady {
          return .fail(RPCError(code: .unavailable, message: "no replica is reachable: \(failures.joined(separator: "; "))"), unreachable: failing)
        }
        // Every reachable connection is at the peer's stream limit: open another where the
        // replica may have one more, and wait (within the call's deadline) for a free slot.
        var grow: [Int] = []
        for i in full where !s.growing[i] && 1 + s.extras[i].count < self.maxConnectionsPerReplica {
          s.growing[i] = true
          grow.append(i)
        }
        return .wait(s.generation, grow: grow)
      }
      switch step {
      case .use(let c, let index): return (c, index)
      case .fail(let e, let unreachable):
        for index in unreachable { self.gate?.unreachable(replica: index) }
        throw e
      case .wait(let seen, let grow):
        for i in grow { self.demand[i].yield() }
        guard let deadline else {
          try await self.waitForChange(after: seen)
          continue
        }
        // Only a call that has to queue pays for a timer: it wakes the waiters at the deadline.
        let alarm = Task {
          try await Task.sleep(until: deadline, tolerance: .zero, clock: .continuous)
          self.update(nil)
        }
        defer { alarm.cancel() }
        try await self.waitForChange(after: seen)
      }
    }
  }

  private func waitForChange(after seen: Int) async throws {
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
        let changed = self.state.withLockedValue { s -> Bool in
          guard s.generation == seen, !Task.isCancelled else { return true }
          s.waiters.append(c)
          return false
        }
        if changed { c.resume() }
      }
    } onCancel: {
      // Wake everyone: each waiter loops, and the cancelled one throws at the top.
      self.update(nil)
    }
  }

  /// Sleeps for a reconnect delay; throws if the pool shuts down meanwhile (checked after).
  func sleepUnlessShutDown(for delay: Duration) async throws {
    // Short steps so shutdown never waits out a long backoff.
    let deadline = ContinuousClock.now + delay
    while ContinuousClock.now < deadline {
      if self.isShutDown { throw CancellationError() }
      try await Task.sleep(for: min(.milliseconds(50), deadline - ContinuousClock.now))
    }
    if self.isShutDown { throw CancellationError() }
  }
}

extension Sequence {
  /// `self` then `other`, without building an array.
  fileprivate func chained<Other: Sequence>(with other: Other) -> some Sequence<Element> where Other.Element == Element {
    sequence(state: (self.makeIterator(), other.makeIterator())) { state in state.0.next() ?? state.1.next() }
  }
}
