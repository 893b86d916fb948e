/// Reconnect delays: exponential with full jitter in ±`jitter`, capped at `maximum`.
/// Pure: the random source is injected so tests are deterministic.
public struct Backoff: Sendable, Hashable {
  public var initial: Duration
  public var maximum: Duration
  public var multiplier: Double
  /// Fraction of the delay to randomize in both directions (0.2 = ±20 %).
  public var jitter: Double
  private var current: Duration

  public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(10), multiplier: Double = 1.6, jitter: Double = 0.2) {
    self.initial = initial
    self.maximum = maximum
    self.multiplier = multiplier
    self.jitter = jitter
    self.current = initial
  }

  /// The next delay; `unit` is a random number in 0..<1.
  public mutating func next(unit: Double = Double.random(in: 0..<1)) -> Duration {
    let base = self.current
    let grown = base * self.multiplier
    self.current = grown > self.maximum ? self.maximum : grown
    let factor = 1 + self.jitter * (2 * unit - 1)
    return base * factor
  }

  /// A connection succeeded: start again from `initial`.
  public mutating func reset() { self.current = self.initial }
}

/// How a client spreads calls over its replicas' connections.
public enum LoadBalancingPolicy: String, Sendable, CaseIterable {
  /// Each call goes to the next ready replica in turn.
  case roundRobin = "round_robin"
  /// Each call goes to the ready replica with the fewest calls in flight (ties: in turn).
  case leastRequests = "least_requests"
}

/// Picks a replica for a call. Pure: callers pass in which replicas are ready and their load.
package struct LoadBalancer: Sendable, Hashable {
  package let policy: LoadBalancingPolicy
  private var cursor = 0

  package init(policy: LoadBalancingPolicy) { self.policy = policy }

  /// `candidates` are (index, calls in flight) of ready replicas. `nil` if none is ready.
  package mutating func pick(_ candidates: [(index: Int, load: Int)]) -> Int? {
    guard !candidates.isEmpty else { return nil }
    let start = self.cursor % candidates.count
    self.cursor &+= 1
    switch self.policy {
    case .roundRobin:
      return candidates[start].index
    case .leastRequests:
      // Scan from the rotating start so equal loads still alternate.
      var best = candidates[start]
      for offset in 1..<candidates.count {
        let c = candidates[(start + offset) % candidates.count]
        if c.load < best.load { best = c }
      }
      return best.index
    }
  }
}
