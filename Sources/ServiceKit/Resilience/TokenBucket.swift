/// A token bucket (pure; time is passed in): `capacity` tokens, refilled at `ratePerSecond`.
/// Used per principal by the rate-limit interceptor; the retry hint says when a token will be
/// available again.
public struct TokenBucket: Sendable, Hashable {
  public let capacity: Double
  public let ratePerSecond: Double
  public private(set) var tokens: Double
  private var last: ContinuousClock.Instant?

  public init(capacity: Double, ratePerSecond: Double) {
    precondition(capacity >= 1 && ratePerSecond > 0)
    self.capacity = capacity
    self.ratePerSecond = ratePerSecond
    self.tokens = capacity
  }

  public enum Decision: Sendable, Hashable {
    case allowed
    /// Denied; a token will be there after `retryAfter`.
    case denied(retryAfter: Duration)
  }

  /// Takes `cost` tokens at `now` if there are enough.
  public mutating func take(_ cost: Double = 1, now: ContinuousClock.Instant) -> Decision {
    if let last {
      let elapsed = (now - last).inSeconds
      self.tokens = min(self.capacity, self.tokens + max(0, elapsed) * self.ratePerSecond)
    }
    self.last = now
    if self.tokens >= cost {
      self.tokens -= cost
      return .allowed
    }
    let missing = cost - self.tokens
    return .denied(retryAfter: .nanoseconds(Int64((missing / self.ratePerSecond * 1e9).rounded(.up))))
  }
}

extension Duration {
  /// The duration as a number of seconds, for rates and logs (`TimeAmount(_:)` is the way to
  /// a NIO time amount). The one place ServiceKit turns a `Duration` into a `Double`.
  var inSeconds: Double { self / Duration.seconds(1) }

  /// The duration as a number of milliseconds.
  var inMilliseconds: Double { self / Duration.milliseconds(1) }
}
