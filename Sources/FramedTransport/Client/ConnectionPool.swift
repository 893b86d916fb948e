import GRPCCore
import NIOConcurrencyHelpers

/// The replicas' connection states and the balancer that picks among them. Calls wait here
/// while replicas are still connecting; they fail fast with UNAVAILABLE when every replica is
/// failing (unless the call asked to wait for ready).
final class ConnectionPool: Sendable {
  enum Slot: Sendable {
    case idle
    case connecting
    case ready(ClientConnection)
    case transientFailure(String)
  }

  private struct State {
    var slots: [Slot]
    var balancer: LoadBalancer
    var waiters: [CheckedContinuation<Void, any Error>] = []
    var shutDown = false
    /// Bumped on every change, so a waiter that registers late doesn't miss one.
    var generation = 0
  }
  private let state: NIOLockedValueBox<State>

  private let gate: (any ReplicaGate)?

  init(count: Int, policy: LoadBalancingPolicy, gate: (any ReplicaGate)? = nil) {
    self.state = NIOLockedValueBox(State(slots: Array(repeating: .idle, count: count), balancer: LoadBalancer(policy: policy)))
    self.gate = gate
  }

  var isShutDown: Bool { self.state.withLockedValue { $0.shutDown } }

  /// Changes a slot (or, with `nil`, nothing) and wakes every waiter to look again.
  func update(_ index: Int?, _ body: (inout Slot) -> Void = { _ in }) {
    let waiters = self.state.withLockedValue { s -> [CheckedContinuation<Void, any Error>] in
      if let index { body(&s.slots[index]) }
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
      let c = s.slots.compactMap { slot -> ClientConnection? in
        if case .ready(let c) = slot { return c }
        return nil
      }
      defer { s.waiters = [] }
      return (c, s.waiters)
    }
    for w in waiters { w.resume(throwing: RPCError(code: .unavailable, message: "client transport is shutting down")) }
    return connections
  }

  /// A ready connection and its replica's index.
  func pick(waitForReady: Bool) async throws -> (ClientConnection, Int) {
    while true {
      // A call cancelled (its deadline passed) while waiting for a replica stops waiting.
      try Task.checkCancellation()
      enum Step { case use(ClientConnection, Int), fail(RPCError, unreachable: [Int]), wait(Int) }
      let step: Step = self.state.withLockedValue { s in
        if s.shutDown { return .fail(RPCError(code: .unavailable, message: "client transport is shutting down"), unreachable: []) }
        var candidates: [(index: Int, load: Int)] = []
        var anyConnecting = false
        var failures: [String] = []
        var failing: [Int] = []
        for (i, slot) in s.slots.enumerated() {
          switch slot {
          case .ready(let c):
            if c.status.isUsable { candidates.append((i, c.status.activeCalls)) } else { anyConnecting = true }
          case .idle, .connecting: anyConnecting = true
          case .transientFailure(let reason):
            failures.append(reason)
            failing.append(i)
          }
        }
        var refused = 0
        while let index = s.balancer.pick(candidates) {
          // The gate (circuit breakers) has the last word on the replica the balancer chose.
          if case .ready(let c) = s.slots[index], self.gate?.admit(replica: index) ?? true { return .use(c, index) }
          candidates.removeAll { $0.index == index }
          refused += 1
        }
        if refused > 0 {
          // Failing fast is the point of an open breaker; waiting would hide it.
          return .fail(RPCError(code: .unavailable, message: "every reachable replica is failing (circuit open)"), unreachable: [])
        }
        if !anyConnecting && !waitForReady {
          return .fail(RPCError(code: .unavailable, message: "no replica is reachable: \(failures.joined(separator: "; "))"), unreachable: failing)
        }
        return .wait(s.generation)
      }
      switch step {
      case .use(let c, let index): return (c, index)
      case .fail(let e, let unreachable):
        for index in unreachable { self.gate?.unreachable(replica: index) }
        throw e
      case .wait(let seen):
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
