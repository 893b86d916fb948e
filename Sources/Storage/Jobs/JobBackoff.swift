/// When a failed job runs again: `base · 2^(attempt − 1)`, at most `cap`, plus up to `jitter`
/// of that at random (so jobs that failed together do not all come back at once). Pure: the
/// queue asks it for the delay after each failed attempt.
public struct JobBackoff: Sendable, Hashable {
  /// The wait after the first failed attempt.
  public var base: Duration
  /// The longest wait.
  public var cap: Duration
  /// A fraction (0…1) of the delay added at random; 0 makes the schedule exact.
  public var jitter: Double

  public init(base: Duration = .seconds(5), cap: Duration = .seconds(3600), jitter: Double = 0.1) {
    self.base = base
    self.cap = cap
    self.jitter = min(max(jitter, 0), 1)
  }

  /// The delay without jitter after failed attempt `attempt` (1 is the first).
  public func nominalDelay(afterAttempt attempt: Int) -> Duration {
    let baseMs = max(Self.milliseconds(self.base), 0)
    let capMs = max(Self.milliseconds(self.cap), 0)
    // 2^(attempt−1) without overflow: past 2^40 any sane base is over any sane cap.
    let exponent = min(max(attempt, 1) - 1, 40)
    let (scaled, overflow) = baseMs.multipliedReportingOverflow(by: Int64(1) << Int64(exponent))
    return .milliseconds(overflow ? capMs : min(scaled, capMs))
  }

  /// The delay to use after failed attempt `attempt`: the nominal one plus jitter.
  public func delay<R: RandomNumberGenerator>(afterAttempt attempt: Int, using random: inout R) -> Duration {
    let nominal = Self.milliseconds(self.nominalDelay(afterAttempt: attempt))
    guard self.jitter > 0, nominal > 0 else { return .milliseconds(nominal) }
    let spread = Int64(Double(nominal) * self.jitter)
    return .milliseconds(nominal + (spread > 0 ? Int64.random(in: 0...spread, using: &random) : 0))
  }

  public func delay(afterAttempt attempt: Int) -> Duration {
    var random = SystemRandomNumberGenerator()
    return self.delay(afterAttempt: attempt, using: &random)
  }

  static func milliseconds(_ d: Duration) -> Int64 {
    let (seconds, attoseconds) = d.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}
