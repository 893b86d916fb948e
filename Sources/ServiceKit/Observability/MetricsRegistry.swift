import CoreMetrics
import GRPCCore
import Metrics
import Prometheus

/// One host's metrics: a Prometheus registry of its own (no process-wide bootstrap, so tests
/// can run several hosts in one process) behind swift-metrics' API.
public final class HostMetrics: Sendable {
  public let registry: PrometheusCollectorRegistry
  public let factory: PrometheusMetricsFactory

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
  }

  /// The Prometheus text exposition of everything recorded.
  public func exposition() -> String {
    var bytes: [UInt8] = []
    self.registry.emit(into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// RED metrics per call: `rpc_server_requests_total` and `rpc_server_duration_seconds` by
/// service, method and code; `rpc_server_in_flight` by service and method; stream messages
/// received and sent.
public struct MetricsInterceptor: ServerInterceptor {
  private let factory: any MetricsFactory

  public init(metrics: HostMetrics) { self.factory = metrics.factory }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let factory = self.factory
    let base = [
      ("service", context.descriptor.service.fullyQualifiedService), ("method", context.descriptor.method),
    ]
    let inFlight = CoreMetrics.Meter(label: "rpc_server_in_flight", dimensions: base, factory: factory)
    let received = CoreMetrics.Counter(label: "rpc_server_messages_received_total", dimensions: base, factory: factory)
    let sent = CoreMetrics.Counter(label: "rpc_server_messages_sent_total", dimensions: base, factory: factory)
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
      CoreMetrics.Counter(label: "rpc_server_requests_total", dimensions: dimensions, factory: factory).increment()
      Metrics.Timer(label: "rpc_server_duration_seconds", dimensions: dimensions, factory: factory)
        .record(duration: ContinuousClock.now - start)
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
