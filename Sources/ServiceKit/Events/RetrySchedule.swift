import Storage

/// When to try an event again after it failed, and when to give up and park it: exponential
/// backoff from `initial`, doubled per failure up to `maximum`, for `attempts` tries in all.
/// Pure, so the policy is tested without a feed or a clock.
public struct RetrySchedule: Sendable, Hashable {
  public var initial: Duration
  public var maximum: Duration
  /// Tries in all, the first included (at least 1).
  public var attempts: Int

  public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5), attempts: Int = 5) {
    self.initial = initial
    self.maximum = maximum
    self.attempts = max(1, attempts)
  }

  /// What to do after the `failures`-th failure (1-based).
  public enum Decision: Sendable, Hashable {
    case retry(after: Duration)
    case park
  }

  public func decision(afterFailure failures: Int) -> Decision {
    guard failures < self.attempts else { return .park }
    return .retry(after: self.delay(afterFailure: failures))
  }

  /// `initial · 2^(failures-1)`, at most `maximum` (the job queue's backoff, without jitter).
  public func delay(afterFailure failures: Int) -> Duration {
    JobBackoff(base: self.initial, cap: self.maximum, jitter: 0).nominalDelay(afterAttempt: failures)
  }
}
