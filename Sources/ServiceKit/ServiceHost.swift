import FramedTransport
import FramedWire
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// Where a host listens.
public struct ListenAddresses: Sendable, Hashable {
  /// The framed-wire listener ("host:port").
  public var framed: String
  /// The standard gRPC over HTTP/2 listener ("host:port").
  public var grpc: String
}

/// Runs one set of GRPCCore services on both listeners — the framed wire and standard gRPC over
/// HTTP/2 — with the health service added, and drains both on shutdown.
public final class ServiceHost: Sendable {
  public struct Config: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var framedPort = 0
    public var grpcPort = 0
    /// Framed-wire server settings (limits, drain grace, TLS).
    public var framed = FramedServerTransport.Config()
    public init() {}
  }

  public let name: String
  public let health: HealthStatusStore
  private let framedServer: GRPCServer<FramedServerTransport>
  private let grpcServer: GRPCServer<HTTP2ServerTransport.Posix>
  private let framedTransport: FramedServerTransport
  private let grpcTransport: HTTP2ServerTransport.Posix

  /// - Parameters:
  ///   - name: the service name health reports under (besides "").
  ///   - services: the services to serve; `HealthService` is added.
  public init(name: String, services: [any RegistrableRPCService], interceptors: [any ServerInterceptor] = [], config: Config) throws {
    self.name = name
    self.health = HealthStatusStore()
    self.health.set(.serving, for: name)
    var framedConfig = config.framed
    framedConfig.host = config.host
    framedConfig.port = config.framedPort
    self.framedTransport = try FramedServerTransport(config: framedConfig)
    self.grpcTransport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: config.host, port: config.grpcPort),
      transportSecurity: .plaintext,
      config: .defaults {
        $0.compression.enabledAlgorithms = .all
        // Same stream limit on both listeners, so they compare fairly.
        $0.http2.maxConcurrentStreams = config.framed.connection.settings.maxConcurrentStreams
      })
    let all = services + [HealthService(store: self.health)]
    self.framedServer = GRPCServer(transport: self.framedTransport, services: all, interceptors: interceptors)
    self.grpcServer = GRPCServer(transport: self.grpcTransport, services: all, interceptors: interceptors)
  }

  /// Serves until `beginGracefulShutdown()` has drained both listeners (or the task is cancelled).
  public func run() async throws {
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await self.framedServer.serve() }
      group.addTask { try await self.grpcServer.serve() }
    }
  }

  /// The bound addresses; waits until both listeners are up.
  public func addresses() async throws -> ListenAddresses {
    let framed = try await self.framedTransport.listeningAddress
    let grpc = try await self.grpcTransport.listeningAddress
    let g = grpc.ipv4.map { "\($0.host):\($0.port)" } ?? grpc.ipv6.map { "[\($0.host)]:\($0.port)" } ?? "\(grpc)"
    return ListenAddresses(framed: "\(framed.ipAddress ?? "?"):\(framed.port ?? 0)", grpc: g)
  }

  /// Stops accepting, lets in-flight calls finish (GOAWAY on both transports), then `run` returns.
  public func beginGracefulShutdown() {
    for name in [self.name, ""] { self.health.set(.notServing, for: name) }
    self.framedServer.beginGracefulShutdown()
    self.grpcServer.beginGracefulShutdown()
  }
}
