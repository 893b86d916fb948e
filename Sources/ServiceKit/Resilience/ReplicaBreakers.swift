import FramedTransport
import NIOConcurrencyHelpers

/// One circuit breaker per replica of a client transport: a replica that keeps failing stops
/// getting calls, is probed again after `openDuration`, and is used again once a probe works.
public final class ReplicaBreakers: ReplicaGate {
  private let breakers: NIOLockedValueBox<[CircuitBreaker]>
  private let clock: @Sendable () -> ContinuousClock.Instant

  public init(replicas: Int, config: CircuitBreaker.Config = .init(), clock: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
    self.breakers = NIOLockedValueBox(Array(repeating: CircuitBreaker(config: config), count: replicas))
    self.clock = clock
  }

  public func admit(replica index: Int) -> Bool {
    let now = self.clock()
    return self.breakers.withLockedValue { $0[index].allowCall(now: now) }
  }

  public func record(replica index: Int, failed: Bool) {
    let now = self.clock()
    self.breakers.withLockedValue { $0[index].record(success: !failed, now: now) }
  }

  public func unreachable(replica index: Int) {
    let now = self.clock()
    self.breakers.withLockedValue { breakers in
      // Open or probing already: nothing new to learn from a replica that is still down.
      if case .closed = breakers[index].state { breakers[index].record(success: false, now: now) }
    }
  }

  public func release(replica index: Int) {
    self.breakers.withLockedValue { $0[index].release() }
  }

  public func state(of replica: Int) -> CircuitBreaker.State {
    self.breakers.withLockedValue { $0[replica].state }
  }
}
