import CoreMetrics
import GRPCCore
import Metrics
import Prometheus
import Storage
import Synchronization

/// One host's metrics: a Prometheus registry of its own (no process-wide bootstrap, so tests
/// can run several hosts in one process) behind swift-metrics' API.
public final class HostMetrics: Sendable {
  public let registry: PrometheusCollectorRegistry
  public let factory: PrometheusMetricsFactory
  /// The per-call metrics' handles, made once per label set.
  public let handles: MetricHandles
  /// Samplers run before every scrape (gauges of current state), by key.
  private let samplers = Mutex<[String: @Sendable () -> Void]>([:])

  /// Latency buckets for RPC durations, in seconds once rendered.
  public static let durationBuckets: [Duration] = [
    .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
    .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
    .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
  ]

  public init() {
    self.registry = PrometheusCollectorRegistry()
    var factory = PrometheusMetricsFactory(registry: self.registry)
    factory.durationHistogramBuckets["rpc_server_duration_seconds"] = Self.durationBuckets
    factory.durationHistogramBuckets["rpc_client_duration_seconds"] = Self.durationBuckets
    self.factory = factory
    self.handles = MetricHandles(factory: factory)
  }

  /// The Prometheus text exposition of everything recorded.
  public func exposition() -> String {
    for sample in self.samplers.withLock({ Array($0.values) }) { sample() }
    var bytes: [UInt8] = []
    self.registry.emit(into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
  }
}

// MARK: Saturation: database pools and the password-hashing queue

extension HostMetrics {
  /// Runs `sample` before every scrape, to set gauges from current state. One sampler per
  /// key: observing the same thing again replaces it instead of counting it twice.
  public func onScrape(_ key: String, _ sample: @escaping @Sendable () -> Void) {
    self.samplers.withLock { $0[key] = sample }
  }

  /// A database's connection gates: `db_pool_size`, `db_pool_in_use`, `db_pool_waiting`,
  /// `db_pool_waits_total`, `db_pool_wait_seconds_total` and `db_pool_refused_total{reason}`,
  /// by `pool` ("writer" and "readers" on SQLite, "pool" on PostgreSQL).
  public func observe(_ database: Database) {
    let exporters = database.gates.map { gate in
      GateExporter(gate: gate, prefix: "db_pool", labels: [("database", database.dialect.rawValue), ("pool", gate.name)], registry: self.registry)
    }
    self.onScrape("database") { for exporter in exporters { exporter.sample() } }
  }

  /// Any other bounded queue (the password-hashing threads: prefix `password_hash`): the
  /// same six series under `prefix`; `<prefix>_waiting` is the queue depth.
  public func observe(_ gate: BoundedGate, prefix: String) {
    let exporter = GateExporter(gate: gate, prefix: prefix, labels: [], registry: self.registry)
    self.onScrape(prefix) { exporter.sample() }
  }
}

/// Turns a gate's snapshot into series. Totals are counters: each scrape adds what grew since
/// the last one.
private final class GateExporter: Sendable {
  let gate: BoundedGate
  let size: Prometheus.Gauge
  let inUse: Prometheus.Gauge
  let waiting: Prometheus.Gauge
  let waits: Prometheus.Counter
  let waitSeconds: Prometheus.Counter
  let refused: [BoundedGate.Refusal.Reason: Prometheus.Counter]
  private let last = Mutex<BoundedGate.Snapshot?>(nil)

  init(gate: BoundedGate, prefix: String, labels: [(String, String)], registry: PrometheusCollectorRegistry) {
    self.gate = gate
    self.size = registry.makeGauge(name: "\(prefix)_size", labels: labels)
    self.inUse = registry.makeGauge(name: "\(prefix)_in_use", labels: labels)
    self.waiting = registry.makeGauge(name: "\(prefix)_waiting", labels: labels)
    self.waits = registry.makeCounter(name: "\(prefix)_waits_total", labels: labels)
    self.waitSeconds = registry.makeCounter(name: "\(prefix)_wait_seconds_total", labels: labels)
    var refused: [BoundedGate.Refusal.Reason: Prometheus.Counter] = [:]
    for reason in [BoundedGate.Refusal.Reason.queueFull, .timedOut] {
      refused[reason] = registry.makeCounter(name: "\(prefix)_refused_total", labels: labels + [("reason", reason.rawValue)])
    }
    self.refused = refused
  }

  func sample() {
    // Read and remembered under one lock, so two scrapes at once can't count backwards.
    let (now, before) = self.last.withLock { last in
      let now = self.gate.snapshot
      defer { last = now }
      return (now, last)
    }
    self.size.set(Double(now.permits))
    self.inUse.set(Double(now.inUse))
    self.waiting.set(Double(now.waiting))
    self.waits.increment(by: Int64(now.waitedTotal - (before?.waitedTotal ?? 0)))
    self.waitSeconds.increment(by: max(0, now.waitSecondsTotal - (before?.waitSecondsTotal ?? 0)))
    for (reason, counter) in self.refused {
      counter.increment(by: Int64(now.refusedTotal[reason, default: 0] - (before?.refusedTotal[reason, default: 0] ?? 0)))
    }
  }
}

/// RED metrics per call: `rpc_server_requests_total` and `rpc_server_duration_seconds` by
/// service, method and code; `rpc_server_in_flight` by service and method; stream messages
/// received and sent.
public struct MetricsInterceptor: ServerInterceptor {
  private let handles: MetricHandles

  public init(metrics: HostMetrics) { self.handles = metrics.handles }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let handles = self.handles
    let base = [
      ("service", context.descriptor.service.fullyQualifiedService), ("method", context.descriptor.method),
    ]
    let inFlight = handles.meter("rpc_server_in_flight", base)
    let received = handles.counter("rpc_server_messages_received_total", base)
    let sent = handles.counter("rpc_server_messages_sent_total", base)
    inFlight.increment()
    let start = ContinuousClock.now
    var request = request
    request.messages = RPCAsyncSequence(
      wrapping: request.messages.map { message -> Input in
        received.increment()
        return message
      })
    let response = try await CallObservation.run(request: request, context: context, next: next) { code in
      inFlight.decrement()
      let dimensions = base + [("code", AccessLogInterceptor.name(of: code))]
      handles.counter("rpc_server_requests_total", dimensions).increment()
      handles.timer("rpc_server_duration_seconds", dimensions).record(duration: ContinuousClock.now - start)
    }
    return response.mapProducer { producer in
      { writer in
        try await producer(RPCWriter(wrapping: CountingWriter(base: writer, counter: sent)))
      }
    }
  }
}

/// Counts messages on their way out.
struct CountingWriter<Element: Sendable>: RPCWriterProtocol {
  let base: RPCWriter<Element>
  let counter: CoreMetrics.Counter

  func write(_ element: Element) async throws {
    try await self.base.write(element)
    self.counter.increment()
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }
}
