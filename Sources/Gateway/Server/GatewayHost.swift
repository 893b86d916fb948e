import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceKit
import ServiceLifecycle
import Storage
import Synchronization

/// The gateway process: the API on its HTTP port, `/metrics` `/livez` `/readyz` on the admin
/// port, and its clients to auth, quiz and scoring. It holds no business state, so any number
/// can run side by side. Not a `ServiceModule`: it serves HTTP, not RPC, so it has this small
/// host of its own with the same lifecycle shape (`run` until graceful shutdown, `addresses`
/// once listening).
public final class GatewayHost: Service, Sendable {
  public let settings: GatewaySettings
  public let routes: RouteTable
  public let metrics: HostMetrics
  let openAPI: OpenAPIEndpoints
  let upstreams: Upstreams
  /// Verifies bearer tokens with the auth service's JWKS, fetched through the auth upstream.
  let verifier: TokenVerifier
  let logger: Logger
  /// The gateway's own database: idempotency records and single-use keys (`consumeOnce`).
  /// Migrated when `run` starts, closed after everything else has stopped.
  public let store: GatewayStore
  /// What the Play WebSockets hold now (`/metrics`, tests).
  public let playSockets = PlaySocketStats()
  /// Rendered read replies by their bytes (`gateway_render_cache_*` on `/metrics`).
  let renderCache = RenderCache()
  private let state = Mutex<State>(State())

  private struct State {
    var httpPort: Int?
    var adminPort: Int?
    var failure: String?
    var draining = false
  }

  /// Reads the route table from the generated descriptor set and makes the clients; nothing
  /// listens until `run`.
  public init(settings: GatewaySettings, logSink: LogSink = .standardOutput) throws {
    self.settings = settings
    let level = settings.logLevel
    self.logger = Logger(label: "gateway") { JSONLogHandler(label: $0, level: level, sink: logSink) }
    self.routes = try RouteTable()
    self.openAPI = try OpenAPIEndpoints(routes: self.routes)
    self.metrics = HostMetrics()
    self.upstreams = try Upstreams(
      targets: settings.targets, metrics: self.metrics, transport: settings.upstreamTransport, grpcTargets: settings.grpcTargets,
      deadlines: settings.deadlines)
    guard let auth = self.upstreams.clients["auth"] else { throw GatewayStartError(reason: "no auth-target: bearer tokens can't be verified") }
    self.verifier = TokenVerifier(
      config: .init(issuer: settings.authIssuer, audience: settings.authAudience), source: AuthServiceJWKSSource(client: auth.client))
    // Last: nothing after it can throw and leave the database open.
    self.store = GatewayStore(database: try Database(settings.databaseLocation, logger: self.logger))
    self.metrics.observe(self.store.database)
    self.renderCache.export(to: self.metrics)
  }

  /// Serves until graceful shutdown (SIGTERM under a ServiceGroup): readiness turns off, the
  /// listeners stop accepting and finish in-flight requests, then the clients close.
  public func run() async throws {
    do {
      try await self.store.migrate()
    } catch {
      try? await self.store.database.shutdown()
      self.state.withLock { $0.failure = "gateway database: \(error)" }
      self.logger.critical("gateway database cannot be migrated", metadata: ["error": "\(error)"])
      throw error
    }
    // One limiter for the routes and the Play handshakes: a socket costs a request.
    let rateLimiter = self.settings.rateLimit.map { GatewayRateLimiter(.init(limit: $0, maxBuckets: self.settings.rateLimitBuckets)) }
    let play = self.makePlayEndpoints(rateLimiter: rateLimiter)
    let server: HTTPServerBuilder
    do {
      server = try Self.apiServer(
        play, tls: self.settings.tls, requestHeadTimeout: self.settings.requestHeadTimeout, idleTimeout: self.settings.idleTimeout)
    } catch {
      try? await self.store.database.shutdown()
      self.state.withLock { $0.failure = "tls: \(error)" }
      self.logger.critical("gateway TLS certificate or key cannot be read", metadata: ["error": "\(error)"])
      throw error
    }
    var responder = GatewayResponder(
      routes: self.routes, upstreams: self.upstreams, bodyLimit: self.settings.bodyLimit,
      cors: CORSPolicy(origins: self.settings.corsOrigins), tracer: W3CTracer(), logger: self.logger, openAPI: self.openAPI,
      verifier: self.verifier, rateLimiter: rateLimiter,
      streams: StreamResponder(upstreams: self.upstreams, heartbeat: self.settings.heartbeat, play: play), store: self.store,
      idempotencyMetrics: IdempotencyMetrics(self.metrics), observation: HTTPObservation(metrics: self.metrics, logger: self.logger))
    responder.renderCache = self.renderCache
    if self.settings.tls != nil { responder.strictTransportSecurity = "max-age=\(self.settings.hstsMaxAge)" }
    let api = Application(
      responder: responder, server: server,
      configuration: .init(address: .hostname(self.settings.host, port: self.settings.httpPort), serverName: nil),
      onServerRunning: { [self] channel in self.state.withLock { $0.httpPort = channel.localAddress?.port ?? 0 } },
      logger: self.logger)
    let admin = Application(
      router: self.adminRouter(),
      configuration: .init(address: .hostname(self.settings.host, port: self.settings.adminPort), serverName: nil),
      onServerRunning: { [self] channel in self.state.withLock { $0.adminPort = channel.localAddress?.port ?? 0 } },
      logger: self.logger)
    // Stopped in reverse: the admin port and the API first, the clients after the last request.
    let group = ServiceGroup(
      configuration: .init(
        services: self.upstreams.services.map { .init(service: $0) } + [
          .init(service: GatewayStoreSweeper(store: self.store, interval: self.settings.storeSweepInterval, logger: self.logger)),
          .init(service: api), .init(service: admin),
        ], logger: self.logger))
    do {
      try await withGracefulShutdownHandler {
        try await group.run()
      } onGracefulShutdown: { [self] in
        self.state.withLock { $0.draining = true }
        Task { await group.triggerGracefulShutdown() }
      }
    } catch {
      try? await self.store.database.shutdown()
      self.state.withLock { $0.failure = "\(error)" }
      self.logger.critical("gateway cannot serve", metadata: ["error": "\(error)"])
      throw error
    }
    // Last: requests still being answered may have written to it until the listeners stopped.
    try await self.store.database.shutdown()
  }

  /// The API's and the admin port's "host:port" once both listen. Throws if `run` failed.
  public func addresses() async throws -> (http: String, admin: String) {
    while true {
      let snapshot = self.state.withLock { $0 }
      if let failure = snapshot.failure { throw GatewayStartError(reason: failure) }
      if let http = snapshot.httpPort, let admin = snapshot.adminPort {
        return ("\(self.settings.host):\(http)", "\(self.settings.host):\(admin)")
      }
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  private func adminRouter() -> Router<BasicRequestContext> {
    let router = Router()
    let metrics = self.metrics
    router.get("/metrics") { _, _ -> Response in
      Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
    }
    router.get("/livez") { _, _ -> Response in
      Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
    }
    // The gateway's own readiness: started and not draining. A service that is down fails
    // its routes with 503 through the breaker instead of taking every gateway out of rotation.
    router.get("/readyz") { [self] _, _ -> Response in
      let draining = self.state.withLock { $0.draining }
      return Response(
        status: draining ? .serviceUnavailable : .ok, headers: [.contentType: "text/plain"],
        body: .init(byteBuffer: ByteBuffer(string: draining ? "draining\n" : "ok\n")))
    }
    return router
  }
}

/// The gateway could not start (a port in use …).
public struct GatewayStartError: Error, CustomStringConvertible {
  public var reason: String
  public var description: String { "gateway: cannot start: \(self.reason)" }
}
