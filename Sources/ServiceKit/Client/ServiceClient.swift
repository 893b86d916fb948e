import CoreMetrics
import FramedTransport
import GRPCCore
import Logging
import Metrics
import ServiceLifecycle

/// How a service reaches another one: its replicas, balancing, retries and breakers.
public struct ServiceClientConfig: Sendable {
  /// "host:port" of every replica (framed wire).
  public var replicas: [String]
  public var loadBalancing: LoadBalancingPolicy = .roundRobin
  /// Methods safe to retry; only these get the retry policy.
  public var idempotentMethods: [MethodDescriptor] = []
  public var maxAttempts = 3
  public var initialBackoff: Duration = .milliseconds(50)
  public var maxBackoff: Duration = .seconds(1)
  public var breaker = CircuitBreaker.Config()
  /// Deadline for calls that have none (and no caller deadline to inherit).
  public var defaultTimeout: Duration? = .seconds(10)
  /// Methods whose calls get no default deadline: long-lived streams that end when their
  /// caller goes away or the server ends them. Besides never cutting such a stream at 10 s,
  /// a call without a deadline costs GRPCCore two tasks fewer (its deadline timer), which
  /// matters with thousands of them open.
  public var untimedMethods: [MethodDescriptor] = []

  public init(replicas: [String]) { self.replicas = replicas }

  /// The same retry rules for a caller that runs its own loop (`GRPCClient.unary(…retry:)`)
  /// instead of GRPCCore's retry executor.
  public var unaryRetryPolicy: UnaryRetryPolicy {
    UnaryRetryPolicy(maxAttempts: self.maxAttempts, initialBackoff: self.initialBackoff, maxBackoff: self.maxBackoff)
  }

  /// GRPCCore's service config: the timeout for everything, retries for idempotent methods
  /// (UNAVAILABLE and RESOURCE_EXHAUSTED, exponential backoff with GRPCCore's jitter).
  public var serviceConfig: ServiceConfig {
    var methods: [MethodConfig] = []
    if let timeout = self.defaultTimeout {
      methods.append(MethodConfig(names: [MethodConfig.Name(service: "")], timeout: timeout))
    }
    if !self.untimedMethods.isEmpty {
      // An exact method's config wins over the default one, timeout and all.
      methods.append(MethodConfig(names: self.untimedMethods.map { MethodConfig.Name(service: $0.service.fullyQualifiedService, method: $0.method) }))
    }
    if !self.idempotentMethods.isEmpty, self.maxAttempts > 1 {
      let policy = RetryPolicy(
        maxAttempts: self.maxAttempts, initialBackoff: self.initialBackoff, maxBackoff: self.maxBackoff,
        backoffMultiplier: 2, retryableStatusCodes: [.unavailable, .resourceExhausted])
      methods.append(
        MethodConfig(
          names: self.idempotentMethods.map { MethodConfig.Name(service: $0.service.fullyQualifiedService, method: $0.method) },
          timeout: self.defaultTimeout, executionPolicy: .retry(policy)))
    }
    return ServiceConfig(methodConfig: methods)
  }
}

/// A client to one downstream service: a `GRPCClient` over the framed transport with one
/// circuit breaker per replica, trace/request-id/deadline propagation and client metrics.
/// Run it (it is a lifecycle `Service`) for as long as calls are made.
public final class ServiceClient: Service, Sendable {
  public let client: GRPCClient<FramedClientTransport>
  public let breakers: ReplicaBreakers
  public let transport: FramedClientTransport
  /// The service called (metrics labels).
  public let name: String
  let replicas: [String]

  /// - Parameter interceptors: run after propagation and metrics (e.g. `BearerTokenInterceptor`).
  public init(
    _ config: ServiceClientConfig, name: String = "", tracer: W3CTracer = W3CTracer(), metrics: HostMetrics? = nil,
    interceptors extra: [any ClientInterceptor] = []
  ) throws {
    self.name = name
    self.replicas = config.replicas
    let targets = try config.replicas.map { text in
      guard let target = FramedTarget(text) else { throw ConfigError(key: "replicas", origin: nil, reason: "\"\(text)\" is not host:port") }
      return target
    }
    var transportConfig = FramedClientTransport.Config(targets: targets)
    transportConfig.loadBalancing = config.loadBalancing
    transportConfig.serviceConfig = config.serviceConfig
    let breakers = ReplicaBreakers(replicas: config.replicas.count, config: config.breaker)
    transportConfig.replicaGate = breakers
    self.breakers = breakers
    self.transport = try FramedClientTransport(config: transportConfig)
    var interceptors: [any ClientInterceptor] = [ClientPropagationInterceptor(tracer: tracer)]
    if let metrics { interceptors.append(ClientMetricsInterceptor(metrics: metrics)) }
    interceptors += extra
    self.client = GRPCClient(transport: self.transport, interceptors: interceptors)
  }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await self.client.runConnections()
    } onGracefulShutdown: {
      self.client.beginGracefulShutdown()
    }
  }

  public func shutDown() { self.client.beginGracefulShutdown() }

  /// `rpc_client_circuit_open{service, replica}` on `metrics`: 1 while a replica's breaker is
  /// open or probing, 0 when closed (sampled on scrape).
  public func export(to metrics: HostMetrics) {
    let gauges = self.replicas.map { replica in
      metrics.registry.makeGauge(
        name: "rpc_client_circuit_open", labels: [("service", self.name), ("replica", replica)],
        help: "1 while calls to this replica are refused or probing (circuit breaker open or half-open).")
    }
    metrics.onScrape("client.\(self.name).\(ObjectIdentifier(self).hashValue)") {
      for (index, gauge) in gauges.enumerated() {
        if case .closed = self.breakers.state(of: index) { gauge.set(Double(0)) } else { gauge.set(Double(1)) }
      }
    }
  }
}

/// `rpc_client_requests_total` and `rpc_client_duration_seconds` by service, method and code.
/// The code is the one known when the response head arrives: a failure sent as trailers-only
/// (how unary errors arrive) is counted; a streaming call failing after messages counts as OK.
public struct ClientMetricsInterceptor: ClientInterceptor {
  private let handles: MetricHandles
  public init(metrics: HostMetrics) { self.handles = metrics.handles }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    let start = ContinuousClock.now
    let base = [("service", context.descriptor.service.fullyQualifiedService), ("method", context.descriptor.method)]
    let record: (Status.Code) -> Void = { code in
      let dimensions = base + [("code", AccessLogInterceptor.name(of: code))]
      self.handles.counter("rpc_client_requests_total", dimensions).increment()
      self.handles.timer("rpc_client_duration_seconds", dimensions).record(duration: ContinuousClock.now - start)
    }
    do {
      let response = try await next(request, context)
      switch response.accepted {
      case .success: record(.ok)
      case .failure(let error): record(Status.Code(error.code))
      }
      return response
    } catch {
      record(CallObservation.code(of: error))
      throw error
    }
  }
}
