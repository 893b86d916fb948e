import Synchronization
import NIOCore

/// A first-in, first-out gate in front of a scarce resource (connections, hashing threads): at
/// most `permits` holders at once; the rest wait as suspended tasks (never on a thread) in
/// arrival order, at most `maxWaiting` of them and each for at most `waitTimeout`. A waiter
/// that is cancelled (its call's deadline passed) leaves the queue at once. SQLite's single
/// writer is a gate of one permit.
public final class BoundedGate: Sendable {
  public struct Limits: Sendable, Hashable {
    public var permits: Int
    /// Waiters beyond this are refused at once: a queue that long won't drain in time.
    public var maxWaiting: Int
    public var waitTimeout: Duration

    public init(permits: Int, maxWaiting: Int = 512, waitTimeout: Duration = .seconds(5)) {
      self.permits = max(1, permits)
      self.maxWaiting = max(0, maxWaiting)
      self.waitTimeout = waitTimeout
    }
  }

  /// Why a caller did not get a permit; `retryAfter` is a hint for the caller's backoff.
  public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: String, Sendable, Hashable {
      case queueFull = "queue_full"
      case timedOut = "timed_out"
    }
    public var gate: String
    public var reason: Reason
    public var waited: Duration
    public var waiting: Int
    public var retryAfter: Duration

    public var description: String {
      switch self.reason {
      case .queueFull: "\(self.gate): \(self.waiting) already waiting"
      case .timedOut: "\(self.gate): no turn within \(self.waited.retryMilliseconds) ms"
      }
    }
  }

  /// What `/metrics` shows: current use and totals since start.
  public struct Snapshot: Sendable, Hashable {
    public var permits: Int
    public var inUse: Int
    public var waiting: Int
    /// Permits handed out after a wait, and the time those waits took.
    public var waitedTotal: Int
    public var waitSecondsTotal: Double
    public var refusedTotal: [Refusal.Reason: Int]
  }

  private struct Waiter {
    let id: UInt64
    let since: ContinuousClock.Instant
    let continuation: CheckedContinuation<Void, any Error>
    var timer: Task<Void, Never>?
  }

  private struct State {
    var inUse = 0
    var waiters = CircularBuffer<Waiter>()
    var nextID: UInt64 = 0
    var waitedTotal = 0
    var waitSecondsTotal = 0.0
    var refusedTotal: [Refusal.Reason: Int] = [:]
    /// Recent time a permit is held (moving average), for the retry hint.
    var averageHold: Duration = .milliseconds(10)
  }

  public let name: String
  public let limits: Limits
  private let state = Mutex(State())

  public init(name: String, limits: Limits) {
    self.name = name
    self.limits = limits
  }

  public var snapshot: Snapshot {
    self.state.withLock { s in
      Snapshot(
        permits: self.limits.permits, inUse: s.inUse, waiting: s.waiters.count, waitedTotal: s.waitedTotal,
        waitSecondsTotal: s.waitSecondsTotal, refusedTotal: s.refusedTotal)
    }
  }

  /// Runs `body` holding a permit, released on every path.
  public func withPermit<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await self.acquire()
    let start = ContinuousClock.now
    defer { self.release(heldFor: ContinuousClock.now - start) }
    return try await body()
  }

  /// Takes a permit, waiting in line for one; throws `Refusal` or `CancellationError`.
  private func acquire() async throws {
    enum Entry {
      case granted
      case queue(UInt64)
      case refused(Refusal)
    }
    let entry: Entry = self.state.withLock { s in
      if s.inUse < self.limits.permits, s.waiters.isEmpty {
        s.inUse += 1
        return .granted
      }
      if s.waiters.count >= self.limits.maxWaiting {
        s.refusedTotal[.queueFull, default: 0] += 1
        return .refused(self.refusal(.queueFull, waited: .zero, s))
      }
      s.nextID &+= 1
      return .queue(s.nextID)
    }
    switch entry {
    case .granted: return
    case .refused(let refusal): throw refusal
    case .queue(let id):
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
          self.enqueue(id, continuation)
        }
      } onCancel: {
        self.remove(id, failing: CancellationError())
      }
    }
  }

  private func enqueue(_ id: UInt64, _ continuation: CheckedContinuation<Void, any Error>) {
    enum Outcome {
      case granted, cancelled, queued
    }
    let outcome: Outcome = self.state.withLock { s in
      // A permit may have come free since the first look; cancellation may have come first
      // (its handler found nothing to remove, so it is seen here).
      if s.inUse < self.limits.permits, s.waiters.isEmpty {
        s.inUse += 1
        return .granted
      }
      if Task.isCancelled { return .cancelled }
      s.waiters.append(Waiter(id: id, since: .now, continuation: continuation, timer: nil))
      return .queued
    }
    switch outcome {
    case .granted: continuation.resume()
    case .cancelled: continuation.resume(throwing: CancellationError())
    case .queued:
      // Armed after queueing, so it can't fire before its waiter exists.
      let timeout = self.limits.waitTimeout
      let timer = Task {
        try? await Task.sleep(for: timeout)
        if !Task.isCancelled { self.expire(id) }
      }
      let armed = self.state.withLock { s -> Bool in
        guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return false }
        s.waiters[index].timer = timer
        return true
      }
      if !armed { timer.cancel() }
    }
  }

  private func expire(_ id: UInt64) {
    let expired: (Waiter, Refusal)? = self.state.withLock { s in
      guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
      let waiter = s.waiters.remove(at: index)
      let waited = ContinuousClock.now - waiter.since
      s.refusedTotal[.timedOut, default: 0] += 1
      s.waitSecondsTotal += waited.inSeconds
      return (waiter, self.refusal(.timedOut, waited: waited, s))
    }
    guard let (waiter, refusal) = expired else { return }
    waiter.continuation.resume(throwing: refusal)
  }

  private func remove(_ id: UInt64, failing error: any Error) {
    let waiter: Waiter? = self.state.withLock { s in
      guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
      return s.waiters.remove(at: index)
    }
    guard let waiter else { return }
    waiter.timer?.cancel()
    waiter.continuation.resume(throwing: error)
  }

  private func release(heldFor held: Duration) {
    let next: Waiter? = self.state.withLock { s in
      // A moving average over roughly the last 8 holds.
      s.averageHold = (s.averageHold * 7 + held) / 8
      guard let next = s.waiters.popFirst() else {
        s.inUse -= 1
        return nil
      }
      // The permit passes straight to the next in line: no barging.
      s.waitedTotal += 1
      s.waitSecondsTotal += (ContinuousClock.now - next.since).inSeconds
      return next
    }
    guard let next else { return }
    next.timer?.cancel()
    next.continuation.resume()
  }

  /// The hint: how long the line ahead takes to drain at the recent pace, 50 ms to 5 s.
  private func refusal(_ reason: Refusal.Reason, waited: Duration, _ s: State) -> Refusal {
    let drain = s.averageHold * (s.waiters.count + 1) / self.limits.permits
    let retry = min(max(drain, .milliseconds(50)), .seconds(5))
    return Refusal(gate: self.name, reason: reason, waited: waited, waiting: s.waiters.count, retryAfter: retry)
  }
}

extension Duration {
  /// Seconds as a floating-point number (metrics, logs).
  var inSeconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}
