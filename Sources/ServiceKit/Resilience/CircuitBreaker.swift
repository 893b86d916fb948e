/// A per-replica circuit breaker as a pure state machine (time is passed in).
///
/// Closed: calls flow; outcomes go into a sliding window of the last `windowSize` calls. When
/// the window holds at least `minimumCalls` and the failure ratio reaches `failureRatio`, it
/// opens. Open: calls are refused until `openDuration` has passed, then half-open: up to
/// `halfOpenProbes` trial calls go through; one success closes it, one failure opens it again.
public struct CircuitBreaker: Sendable, Hashable {
  public struct Config: Sendable, Hashable {
    public var windowSize = 20
    public var minimumCalls = 10
    public var failureRatio = 0.5
    public var openDuration: Duration = .seconds(5)
    public var halfOpenProbes = 1
    public init() {}
  }

  public enum State: Sendable, Hashable {
    case closed
    case open(until: ContinuousClock.Instant)
    case halfOpen(probesInFlight: Int)
  }

  public let config: Config
  public private(set) var state: State = .closed
  private var window: [Bool] = []  // true = failure
  private var next = 0

  public init(config: Config = Config()) { self.config = config }

  /// Whether a call may go to this replica now (a half-open probe is counted as started).
  public mutating func allowCall(now: ContinuousClock.Instant) -> Bool {
    switch self.state {
    case .closed:
      return true
    case .open(let until):
      guard now >= until else { return false }
      self.state = .halfOpen(probesInFlight: 1)
      return true
    case .halfOpen(let probes):
      guard probes < self.config.halfOpenProbes else { return false }
      self.state = .halfOpen(probesInFlight: probes + 1)
      return true
    }
  }

  /// An allowed call ended without saying anything about the replica (the caller gave
  /// up): a half-open probe slot is freed for the next call.
  public mutating func release() {
    if case .halfOpen(let probes) = self.state { self.state = .halfOpen(probesInFlight: max(0, probes - 1)) }
  }

  /// Records how an allowed call ended.
  public mutating func record(success: Bool, now: ContinuousClock.Instant) {
    switch self.state {
    case .halfOpen:
      if success {
        self.state = .closed
        self.window.removeAll()
        self.next = 0
      } else {
        self.state = .open(until: now + self.config.openDuration)
      }
    case .open:
      break  // a late result from before it opened
    case .closed:
      if self.window.count < self.config.windowSize {
        self.window.append(!success)
      } else {
        self.window[self.next] = !success
        self.next = (self.next + 1) % self.config.windowSize
      }
      let failures = self.window.filter { $0 }.count
      if self.window.count >= self.config.minimumCalls,
        Double(failures) / Double(self.window.count) >= self.config.failureRatio
      {
        self.state = .open(until: now + self.config.openDuration)
        self.window.removeAll()
        self.next = 0
      }
    }
  }
}
