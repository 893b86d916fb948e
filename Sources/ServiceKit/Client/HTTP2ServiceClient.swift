import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import ServiceLifecycle

/// A client to one downstream service over standard gRPC (HTTP/2) instead of the framed
/// wire: the same replicas (their gRPC ports), round robin, service config (timeouts,
/// retries for idempotent methods) and propagation and metrics interceptors as
/// `ServiceClient`, without the per-replica breakers (grpc-swift's HTTP/2 transport has no
/// hook for them). It is how the gateway's upstream can be switched to gRPC/HTTP2 to compare
/// the two wires under the same load.
public final class HTTP2ServiceClient: Service, Sendable {
  public let client: GRPCClient<HTTP2ClientTransport.Posix>
  public let name: String

  public init(
    _ config: ServiceClientConfig, name: String = "", tracer: W3CTracer = W3CTracer(), metrics: HostMetrics? = nil,
    interceptors extra: [any ClientInterceptor] = []
  ) throws {
    self.name = name
    let targets = try config.replicas.map { text in
      guard let target = FramedTarget(text) else { throw ConfigError(key: "replicas", origin: nil, reason: "\"\(text)\" is not host:port") }
      return target
    }
    var serviceConfig = config.serviceConfig
    serviceConfig.loadBalancingConfig = [.roundRobin]
    let transport = try HTTP2ClientTransport.Posix(
      target: try Self.resolvable(targets), transportSecurity: .plaintext, serviceConfig: serviceConfig)
    var interceptors: [any ClientInterceptor] = [ClientPropagationInterceptor(tracer: tracer)]
    if let metrics { interceptors.append(ClientMetricsInterceptor(metrics: metrics)) }
    interceptors += extra
    self.client = GRPCClient(transport: transport, interceptors: interceptors)
  }

  /// IPv4 literals as they are (every replica balanced); one host name through DNS.
  static func resolvable(_ targets: [FramedTarget]) throws -> any ResolvableTarget {
    let literal = targets.allSatisfy { target in
      let octets = target.host.split(separator: ".", omittingEmptySubsequences: false)
      return octets.count == 4 && octets.allSatisfy { UInt8($0) != nil }
    }
    if literal { return ResolvableTargets.IPv4(addresses: targets.map { SocketAddress.IPv4(host: $0.host, port: $0.port) }) }
    guard targets.count == 1, let only = targets.first else {
      throw ConfigError(key: "replicas", origin: nil, reason: "several gRPC/HTTP2 replicas must be IPv4 addresses (DNS names one at a time)")
    }
    return ResolvableTargets.DNS(host: only.host, port: only.port)
  }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await self.client.runConnections()
    } onGracefulShutdown: {
      self.client.beginGracefulShutdown()
    }
  }
}
