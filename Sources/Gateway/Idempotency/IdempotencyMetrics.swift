import ServiceKit

/// `gateway_idempotency_requests_total{outcome}` on the gateway's `/metrics`: what requests
/// with `Idempotency-Key` met. A climbing `in_flight` or `mismatch` points at a client reusing
/// keys; `store_unavailable` and `save_failed` at the gateway's database.
struct IdempotencyMetrics: Sendable {
  enum Outcome: String, CaseIterable, Sendable {
    /// Ran, and its answer was kept for replay.
    case kept
    /// Ran; its answer (5xx, 429 …) was not kept, so the key was freed for a retry.
    case notKept = "not_kept"
    case replayed
    case mismatch
    case inFlight = "in_flight"
    /// The claim could not be made: 503, nothing ran.
    case storeUnavailable = "store_unavailable"
    /// Ran, but the answer could not be saved (the claim expires with its lease).
    case saveFailed = "save_failed"
  }

  /// One increment per outcome (the counters themselves are Prometheus's, made once here).
  private let increments: [Outcome: @Sendable () -> Void]

  init(_ metrics: HostMetrics) {
    var increments: [Outcome: @Sendable () -> Void] = [:]
    for outcome in Outcome.allCases {
      let counter = metrics.registry.makeCounter(
        name: "gateway_idempotency_requests_total", labels: [("outcome", outcome.rawValue)],
        help: "Requests with Idempotency-Key on a route that honours it, by what they met")
      increments[outcome] = { counter.increment() }
    }
    self.increments = increments
  }

  func record(_ outcome: Outcome) { self.increments[outcome]?() }
}
