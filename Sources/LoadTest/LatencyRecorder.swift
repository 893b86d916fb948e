import Histogram

/// Latencies in microseconds in an HDR histogram (3 significant digits, 1 µs … 1 h), so
/// percentiles stay correct however long the tail.
public struct LatencyRecorder: Sendable {
  public private(set) var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)

  public init() {}

  /// Records one latency.
  public mutating func record(_ duration: Duration) {
    let us = max(1, duration.microseconds)
    _ = self.histogram.record(UInt64(min(us, 3_600_000_000)))
  }

  public mutating func merge(_ other: LatencyRecorder) { self.histogram.add(other.histogram) }

  public var count: UInt64 { self.histogram.totalCount }

  /// The value at `percentile` (0…100) in microseconds; 0 when empty.
  public func percentile(_ percentile: Double) -> UInt64 {
    self.count == 0 ? 0 : self.histogram.valueAtPercentile(percentile)
  }

  public var maxMicros: UInt64 { self.count == 0 ? 0 : self.histogram.max }

  /// The distribution in HdrHistogram's percentile text format (values in microseconds).
  public func percentileDistribution() -> String {
    var out = ""
    self.histogram.outputPercentileDistribution(to: &out, outputValueUnitScalingRatio: 1)
    return out
  }
}

extension Duration {
  /// Whole microseconds, rounded down.
  public var microseconds: Int64 {
    let (s, atto) = self.components
    return s * 1_000_000 + atto / 1_000_000_000_000
  }
}

/// Open-loop pacing: request `i` is due at `start + i / rate`, whether or not earlier ones have
/// finished. Latency is measured from that due time, so a stalled server shows up in the tail
/// instead of silently slowing the generator (coordinated omission).
public struct OpenLoopSchedule: Sendable, Hashable {
  public let rate: Double
  public init(rate: Double) {
    precondition(rate > 0)
    self.rate = rate
  }

  /// Offset of request `index` from the start.
  public func dueOffset(of index: Int) -> Duration {
    .nanoseconds(Int64((Double(index) / self.rate * 1e9).rounded()))
  }

  /// How many requests are due by `elapsed`.
  public func dueCount(by elapsed: Duration) -> Int {
    Int((Double(elapsed.microseconds) / 1e6 * self.rate).rounded(.down)) + 1
  }
}
