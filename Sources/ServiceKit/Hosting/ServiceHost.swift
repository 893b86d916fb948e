import FramedTransport
import FramedWire
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import QuizwireProtos
import ServiceLifecycle

/// Where a host listens.
public struct ListenAddresses: Sendable, Hashable {
  /// The framed-wire listener ("host:port").
  public var framed: String
  /// The standard gRPC over HTTP/2 listener ("host:port").
  public var grpc: String
  /// The admin HTTP listener ("host:port"), nil when disabled.
  public var admin: String?
}

/// Runs one set of GRPCCore services the same way for every Quizwire service: the framed wire
/// and gRPC over HTTP/2 listeners, the admin HTTP port, health, the standard interceptors,
/// dependency-driven readiness and a graceful drain. It is a swift-service-lifecycle
/// `Service`: in a `ServiceGroup`, SIGTERM/SIGINT drain it.
public final class ServiceHost: Service, Sendable {
  public struct Config: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var framedPort = 0
    public var grpcPort = 0
    /// nil: no admin listener.
    public var adminPort: Int? = 0
    /// How long calls still running at shutdown get to finish, counted from their connection's
    /// final GOAWAY on the framed wire (docs/protocol.md §11.2) and from the drain over HTTP/2.
    public var grace: Duration = .seconds(10)
    /// The standard interceptors (off only to measure what they cost).
    public var interceptors = true
    /// Per-principal limit; nil turns rate limiting off.
    public var rateLimit: RateLimit? = RateLimit(perSecond: 500, burst: 1000)
    /// Peers whose `x-forwarded-for` keys an anonymous caller's rate limit (the gateway).
    public var trustedProxies = TrustedProxies.none
    /// Budget for calls that arrive without a deadline.
    public var defaultDeadline: Duration = .seconds(30)
    public var methodDeadlines: [MethodDescriptor: Duration] = [:]
    /// How often dependencies are checked for readiness.
    public var readinessInterval: Duration = .seconds(2)
    /// Framed-wire server settings (limits, TLS, handler placement).
    public var framed = FramedServerTransport.Config()
    /// Connections each RPC listener holds at once; more are closed as soon as they are
    /// accepted. nil: a share of the descriptor limit (`ConnectionLimiter.automaticLimit`).
    public var maxConnections: Int?
    /// gRPC/HTTP2 connection management: idle and age limits, keepalive.
    public var grpc = GRPCConnections()
    public init() {}
  }

  /// Everything the standard interceptors need besides configuration.
  public struct Security: Sendable {
    public var policies: AccessPolicies
    public var verifier: TokenVerifier?
    public var apiKeys: (any APIKeyChecker)?
    public init(policies: AccessPolicies = AccessPolicies(fallback: .public), verifier: TokenVerifier? = nil, apiKeys: (any APIKeyChecker)? = nil) {
      self.policies = policies
      self.verifier = verifier
      self.apiKeys = apiKeys
    }
  }

  public let name: String
  public let config: Config
  public let health: HealthStatusStore
  public let readiness: Readiness
  public let metrics: HostMetrics
  public let tracer: W3CTracer
  public let logger: Logger
  private let dependencies: [DependencyCheck]
  private let lifecycle: [any Service]
  private let beforeServing: [BeforeServingStep]
  private let framedServer: GRPCServer<FramedServerTransport>
  private let grpcServer: GRPCServer<PacedServerTransport<HTTP2ServerTransport.Custom<HTTP2Listener>>>
  let framedTransport: FramedServerTransport
  private let grpcTransport: HTTP2ServerTransport.Custom<HTTP2Listener>
  private let saturation: SaturationMetrics
  let grpcConnections: ConnectionLimiter
  private let adminPort = AsyncValue<Result<Int, any Error>>()
  /// Set once the before-serving steps are done (or failed): `addresses()` waits for it.
  private let started = AsyncValue<Result<Void, any Error>>()
  private let draining = NIOLockedValueBox(false)
  private let drainSignal = AsyncStream<Void>.makeStream()
  private let drainActions = NIOLockedValueBox<[@Sendable () -> Void]>([])

  /// - Parameters:
  ///   - name: the service name health reports under (besides "").
  ///   - services: the services to serve; `HealthService` is added.
  ///   - security: access policies and credential checkers for the auth interceptor.
  ///   - dependencies: what readiness depends on.
  ///   - lifecycle: what runs beside the listeners (database, clients, workers): started
  ///     before the before-serving steps, stopped in reverse order after the drain.
  ///   - beforeServing: steps run once before the listeners open (migrations, key bootstrap);
  ///     a failure stops the start with one log line naming the step.
  ///   - logSink: where JSON log lines go.
  public init(
    name: String, services: [any RegistrableRPCService], security: Security = Security(),
    dependencies: [DependencyCheck] = [], lifecycle: [any Service] = [], beforeServing: [BeforeServingStep] = [],
    config: Config, logSink: LogSink = .standardOutput, logLevel: Logger.Level = .info
  ) throws {
    self.name = name
    self.config = config
    self.dependencies = dependencies
    self.lifecycle = lifecycle
    self.beforeServing = beforeServing
    let health = HealthStatusStore()
    self.health = health
    health.set(.notServing, for: name)
    health.set(.notServing, for: "")
    self.readiness = Readiness { ready in
      for service in [name, ""] { health.set(ready ? .serving : .notServing, for: service) }
    }
    self.metrics = HostMetrics()
    self.tracer = W3CTracer()
    self.logger = Logger(label: name) { JSONLogHandler(label: $0, level: logLevel, sink: logSink) }

    var framedConfig = config.framed
    framedConfig.host = config.host
    framedConfig.port = config.framedPort
    framedConfig.connection.drainGrace = TimeAmount(config.grace)
    framedConfig.maxConnections = config.maxConnections
    let loops = MultiThreadedEventLoopGroup.singleton
    self.framedTransport = try FramedServerTransport(config: framedConfig, eventLoopGroup: loops)
    let grpcConnections = ConnectionLimiter(limit: config.maxConnections)
    self.grpcConnections = grpcConnections
    let handshakeTimeouts = EventCounter()
    let listener = HTTP2Listener(
      host: config.host, port: config.grpcPort, eventLoopGroup: loops, limiter: grpcConnections,
      handshakeTimeout: config.framed.connection.handshakeTimeout, handshakeTimeouts: handshakeTimeouts,
      goAwayPingTimeout: config.framed.connection.drainPingTimeout)
    self.grpcTransport = HTTP2ServerTransport.Custom(listenerFactory: listener, config: Self.grpcTransportConfig(config))
    self.saturation = SaturationMetrics(
      registry: self.metrics.registry, loops: Array(loops.makeIterator()),
      listeners: [
        .init(name: "framed", limiter: self.framedTransport.connections),
        .init(name: "grpc", limiter: grpcConnections, handshakeTimeouts: handshakeTimeouts),
      ])
    var interceptors: [any ServerInterceptor] = []
    // Probes must reach health without credentials, and Watch streams live long.
    var policies = security.policies
    policies.merge([Grpc_Health_V1_Health.Method.Check.descriptor: .public, Grpc_Health_V1_Health.Method.Watch.descriptor: .public])
    var deadlines = config.methodDeadlines
    deadlines[Grpc_Health_V1_Health.Method.Watch.descriptor] = deadlines[Grpc_Health_V1_Health.Method.Watch.descriptor] ?? .seconds(24 * 3600)
    if config.interceptors {
      interceptors =
        ServerInterceptorStack(
          service: name, logger: self.logger, metrics: self.metrics, tracer: self.tracer, policies: policies,
          verifier: security.verifier, apiKeys: security.apiKeys,
          rateLimiter: config.rateLimit.map { RateLimiter(defaultLimit: $0) },
          deadlines: DeadlineInterceptor(fallback: config.defaultDeadline, defaults: deadlines), trustedProxies: config.trustedProxies
        ).interceptors
    }
    let all = services + [HealthService(store: self.health)]
    self.framedServer = GRPCServer(transport: self.framedTransport, services: all, interceptors: interceptors)
    self.grpcServer = GRPCServer(
      transport: PacedServerTransport(base: self.grpcTransport, loops: Array(MultiThreadedEventLoopGroup.singleton.makeIterator())),
      services: all, interceptors: interceptors)
  }

  /// Serves until drained (graceful shutdown of the enclosing `ServiceGroup`, or
  /// `beginGracefulShutdown()`), or until the task is cancelled. Starts the lifecycle
  /// services and runs the before-serving steps first; stops the lifecycle services last.
  public func run() async throws {
    DescriptorLimit.raiseOnce(logger: self.logger)
    let lifecycle = LifecycleServices(self.lifecycle, logger: self.logger)
    do {
      for step in self.beforeServing {
        do {
          try await step.run()
        } catch {
          self.logger.critical(
            "cannot start: \(step.name) failed",
            metadata: [
              "service": .string(self.name), "step": .string(step.name), "error": .string("\(error)"),
            ])
          throw HostStartError(service: self.name, step: step.name, underlying: error)
        }
      }
      self.started.set(.success(()))
      try await self.serve(failingWith: lifecycle)
    } catch {
      self.started.set(.failure(error))
      await lifecycle.stop()
      throw error
    }
    await lifecycle.stop()
  }

  private func serve(failingWith lifecycle: LifecycleServices) async throws {
    // The admin port must keep answering during the drain (readiness says 503 then), so it
    // runs outside the lifecycle's graceful-shutdown tree and is stopped after the RPC
    // listeners finished.
    // Stopped gracefully, not cancelled: a cancelled Hummingbird server logs an error.
    let adminStop = AsyncStream<Void>.makeStream()
    let admin: Task<Void, any Error>? = self.config.adminPort.map { port in
      let server = AdminServer(
        host: self.config.host, port: port, metrics: self.metrics, saturation: self.saturation, readiness: self.readiness,
        logger: self.logger)
      let box = self.adminPort
      return Task.detached {
        do {
          try await server.run(until: adminStop.stream) { box.set(.success($0)) }
        } catch {
          box.set(.failure(error))  // e.g. the port is taken: `run` fails below
          throw error
        }
      }
    }
    defer { adminStop.continuation.finish() }
    if admin != nil { _ = try await self.adminPort.get().get() }
    self.saturation.lag.start()
    defer { self.saturation.lag.stop() }
    let watch = Task { await self.watchListeners() }
    defer { watch.cancel() }
    try await withGracefulShutdownHandler {
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await self.framedServer.serve() }
        group.addTask { try await self.grpcServer.serve() }
        group.addTask { try await self.enforceGrace() }
        // A lifecycle service failing (e.g. the database) stops the host.
        group.addTask { try await lifecycle.failure() }
        // Readiness checks run until the listeners finish.
        let monitor = Task { await self.monitorDependencies() }
        defer { monitor.cancel() }
        var listenersDone = 0
        while listenersDone < 2 {
          do {
            try await group.next()
            listenersDone += 1
          } catch is GraceExpired {
            self.logger.warning("grace period over; cancelling the calls still running", metadata: ["service": .string(self.name)])
            break
          }
        }
        group.cancelAll()
      }
    } onGracefulShutdown: {
      self.beginGracefulShutdown()
    }
    if let admin {
      adminStop.continuation.finish()
      _ = await admin.result
    }
    self.logger.info("drained", metadata: ["service": .string(self.name)])
  }

  /// Once draining starts, waits out the grace period (plus a moment for the transports'
  /// own close) and then throws, which cancels whatever is still running.
  private func enforceGrace() async throws {
    for await _ in self.drainSignal.stream { break }
    try Task.checkCancellation()
    // Each framed connection counts its grace from its own final GOAWAY, which comes up to
    // the drain PING wait after the drain starts (docs/protocol.md §11.2): wait for the last.
    let pingWait = Duration.nanoseconds(self.config.framed.connection.drainPingTimeout.nanoseconds)
    try await Task.sleep(for: self.config.grace + pingWait + .milliseconds(250))
    throw GraceExpired()
  }

  private func monitorDependencies() async {
    while !Task.isCancelled {
      let failing = await Readiness.run(self.dependencies, timeout: self.config.readinessInterval)
      let before = self.readiness.snapshot.failing
      self.readiness.update(failing: failing)
      if failing != before {
        self.logger.notice(
          "readiness",
          metadata: [
            "ready": .stringConvertible(self.readiness.isReady),
            "failing": .string(failing.keys.sorted().joined(separator: ",")),
          ])
      }
      try? await Task.sleep(for: self.config.readinessInterval)
    }
  }

  /// The bound addresses; waits until every listener is up.
  public func addresses() async throws -> ListenAddresses {
    try await self.started.get().get()
    let framed = try await self.framedTransport.listeningAddress
    guard let grpc = await self.grpcTransport.listeningAddress else {
      throw RPCError(code: .unavailable, message: "\(self.name): the gRPC listener is not listening")
    }
    let g = grpc.ipv4.map { "\($0.host):\($0.port)" } ?? grpc.ipv6.map { "[\($0.host)]:\($0.port)" } ?? "\(grpc)"
    var admin: String?
    if self.config.adminPort != nil { admin = "\(self.config.host):\(try await self.adminPort.get().get())" }
    return ListenAddresses(framed: "\(framed.ipAddress ?? "?"):\(framed.port ?? 0)", grpc: g, admin: admin)
  }

  /// Runs `action` when the drain begins, before the GOAWAYs: for calls that would otherwise
  /// run until the grace period ends (event feed subscriptions end at once, and their
  /// consumers resume on another replica).
  public func onDrain(_ action: @escaping @Sendable () -> Void) {
    self.drainActions.withLockedValue { $0.append(action) }
  }

  /// Drains: readiness and health turn false first, then GOAWAY on both transports; calls
  /// still running after the grace period are cancelled.
  public func beginGracefulShutdown() {
    let first = self.draining.withLockedValue { d -> Bool in
      defer { d = true }
      return !d
    }
    guard first else { return }
    self.logger.info("draining", metadata: ["service": .string(self.name), "grace_s": .stringConvertible(self.config.grace.components.seconds)])
    self.readiness.beginDraining()
    for action in self.drainActions.withLockedValue({ $0 }) { action() }
    self.drainSignal.continuation.yield()
    self.drainSignal.continuation.finish()
    self.framedServer.beginGracefulShutdown()
    self.grpcServer.beginGracefulShutdown()
  }
}

private struct GraceExpired: Error {}

/// The host could not start: a before-serving step failed.
public struct HostStartError: Error, CustomStringConvertible {
  public var service: String
  public var step: String
  public var underlying: any Error
  public var description: String { "\(self.service): cannot start: \(self.step) failed: \(self.underlying)" }
}

/// The host's lifecycle services in a group of their own, outside the enclosing group's
/// graceful shutdown: they must outlive the drain (the database serves in-flight calls) and
/// stop only after it, in reverse order.
private final class LifecycleServices: Sendable {
  private let group: ServiceGroup?
  private let task: Task<Void, Never>?
  private let failures = AsyncStream<any Error>.makeStream()

  init(_ services: [any Service], logger: Logger) {
    guard !services.isEmpty else {
      self.group = nil
      self.task = nil
      self.failures.continuation.finish()
      return
    }
    let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [], logger: logger))
    self.group = group
    let failures = self.failures.continuation
    self.task = Task.detached {
      do { try await group.run() } catch { failures.yield(error) }
      failures.finish()
    }
  }

  /// Throws the error of a lifecycle service that failed; otherwise waits until cancelled.
  func failure() async throws {
    for await error in self.failures.stream { throw error }
    try await Task.sleep(for: .seconds(365 * 24 * 3600))
  }

  func stop() async {
    guard let group = self.group, let task = self.task else { return }
    await group.triggerGracefulShutdown()
    await task.value
  }
}
/// A value set once, awaited by anyone.
final class AsyncValue<Value: Sendable>: Sendable {
  private let state = NIOLockedValueBox<(Value?, [CheckedContinuation<Value, Never>])>((nil, []))

  func set(_ value: Value) {
    let waiters = self.state.withLockedValue { s -> [CheckedContinuation<Value, Never>] in
      guard s.0 == nil else { return [] }
      s.0 = value
      defer { s.1 = [] }
      return s.1
    }
    for w in waiters { w.resume(returning: value) }
  }

  func get() async -> Value {
    await withCheckedContinuation { c in
      let value = self.state.withLockedValue { s -> Value? in
        if let v = s.0 { return v }
        s.1.append(c)
        return nil
      }
      if let value { c.resume(returning: value) }
    }
  }
}
