import CoreMetrics
import Logging
import Metrics
import ServiceKit

/// HTTP RED by route template on the gateway's `/metrics` — `http_server_requests_total
/// {method, route, status}` and `http_server_duration_seconds{method, route}` — and one JSON
/// access line per request (`http`): method, route template, status, duration, request id and
/// the caller's trace id. Never the path's values, the query, bodies or credentials. A stream's
/// duration is to its response head; its end is the upstream call's (rpc_client_* metrics).
struct HTTPObservation: Sendable {
  /// Made once per (method, route, status). Bounded: the method is one of `knownMethods` or
  /// "other", the route a template, the status a number.
  let handles: MetricHandles
  let logger: Logger

  init(metrics: HostMetrics, logger: Logger) {
    self.handles = metrics.handles
    self.logger = logger
  }

  /// Methods counted by name; any other token a client sends counts as "other", so nobody can
  /// grow `/metrics` with made-up methods.
  static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

  /// What is known of a request when its answer is ready.
  struct Exchange {
    var method: String
    /// The route's template ("/api/v1/quizzes/{id}"), or what answered it: "openapi",
    /// "unmatched" for a 404/405.
    var route: String
    var status: Int
    var start: ContinuousClock.Instant
    var requestID: String
    /// From the caller's `traceparent`, when it sent a valid one.
    var traceID: String?
  }

  func record(_ exchange: Exchange) {
    let elapsed = ContinuousClock.now - exchange.start
    let method = Self.knownMethods.contains(exchange.method) ? exchange.method : "other"
    self.handles.counter("http_server_requests_total", [("method", method), ("route", exchange.route), ("status", String(exchange.status))])
      .increment()
    self.handles.timer("http_server_duration_seconds", [("method", method), ("route", exchange.route)]).record(duration: elapsed)
    // 5xx are the gateway's or a service's faults; everything else is routine.
    let level: Logger.Level = exchange.status >= 500 ? .error : .info
    guard self.logger.logLevel <= level else { return }
    var metadata: Logger.Metadata = [
      "method": .string(exchange.method), "route": .string(exchange.route), "status": .stringConvertible(exchange.status),
      "duration_ms": .stringConvertible((Self.milliseconds(elapsed) * 1000).rounded() / 1000),
      "request_id": .string(exchange.requestID),
    ]
    if let trace = exchange.traceID { metadata["trace_id"] = .string(trace) }
    self.logger.log(level: level, "http", metadata: metadata)
  }

  static func milliseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
  }

  /// The trace id of a W3C `traceparent` ("00-<32 hex>-<16 hex>-<2 hex>"), nil if malformed.
  static func traceID(_ traceparent: String?) -> String? {
    guard let parts = traceparent?.split(separator: "-"), parts.count == 4, parts[1].count == 32,
      parts[1].allSatisfy(\.isHexDigit), parts[1] != String(repeating: "0", count: 32)
    else { return nil }
    return String(parts[1]).lowercased()
  }
}
