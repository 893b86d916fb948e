import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import ServiceKit
import ServiceLifecycle
import SwiftProtobuf

/// The gateway's clients to the services, one `ServiceClient` per service over the framed
/// wire: every replica balanced, a breaker per replica, retries for the methods of GET routes
/// only (a retried write could apply twice).
public final class Upstreams: Sendable {
  /// Clients by short service name ("auth", "quiz", "scoring").
  let clients: [String: ServiceClient]
  /// With `UpstreamTransport.h2`: the unary routes' clients over gRPC/HTTP2, by short name.
  let unaryOverHTTP2: [String: HTTP2ServiceClient]
  /// Each unary route's deadline.
  let deadlines: RouteDeadlines
  /// How a read (an idempotent route) is tried again; writes are never retried.
  let retry: UnaryRetryPolicy

  /// - Parameters:
  ///   - targets: framed "host:port[,host:port]" by short service name.
  ///   - transport: the wire the unary routes use; `.h2` calls `grpcTargets` (the services'
  ///     gRPC ports) instead. Streams and the JWKS fetch stay on the framed wire.
  public init(
    targets: [String: [String]], metrics: HostMetrics? = nil, tracer: W3CTracer = W3CTracer(),
    transport: UpstreamTransport = .framed, grpcTargets: [String: [String]] = [:], deadlines: RouteDeadlines = RouteDeadlines()
  ) throws {
    self.deadlines = deadlines
    self.retry = ServiceClientConfig(replicas: []).unaryRetryPolicy
    var clients: [String: ServiceClient] = [:]
    var h2: [String: HTTP2ServiceClient] = [:]
    for (name, replicas) in targets {
      // No GRPCCore retry policies: `call` retries reads itself (`GRPCClient.unary(…retry:)`,
      // `ServiceClientConfig`'s rules), which costs nothing until a call fails.
      // No default timeout either: every unary route's call has its own deadline, and a
      // GRPCCore timeout would cost a task group per call (`GRPCClient.unary(…retry:)`).
      var config = ServiceClientConfig(replicas: replicas)
      config.defaultTimeout = nil
      let client = try ServiceClient(config, name: name, tracer: tracer, metrics: metrics)
      if let metrics { client.export(to: metrics) }
      clients[name] = client
      if transport == .h2 {
        guard let grpc = grpcTargets[name], !grpc.isEmpty else {
          throw ConfigError(key: "\(name)-grpc-target", origin: nil, reason: "required with upstream-transport h2")
        }
        config.replicas = grpc
        h2[name] = try HTTP2ServiceClient(config, name: name, tracer: tracer, metrics: metrics)
      }
    }
    self.clients = clients
    self.unaryOverHTTP2 = h2
  }

  /// "quiz.v1.QuizService" → "quiz": the package's first component names the service, as
  /// the `--<name>-target` settings do.
  static func shortName(of service: String) -> String { String(service.split(separator: ".").first ?? "") }

  /// The clients, to run for as long as the gateway serves.
  public var services: [any Service] {
    self.clients.values.map { $0 as any Service } + self.unaryOverHTTP2.values.map { $0 as any Service }
  }

  /// Calls `route`'s method with `request` within the route's deadline and returns the reply
  /// as the service sent it, undecoded (the responder renders it, or finds it already
  /// rendered); RPC failures (DEADLINE_EXCEEDED when the budget runs out) are thrown as
  /// `RPCError`.
  func call<Request: SwiftProtobuf.Message>(_ route: Route, request: Request, metadata: Metadata) async throws -> [UInt8] {
    let deadline = ContinuousClock.now + self.deadlines.budget(for: route)
    let retry = route.isIdempotent ? self.retry : nil
    let name = Self.shortName(of: route.method.service)
    let request = ClientRequest(message: request, metadata: metadata)
    if let h2 = self.unaryOverHTTP2[name] {
      return try await h2.client.unary(
        request: request, descriptor: route.method.descriptor, serializer: ProtobufSerializer<Request>(), deserializer: ReplyBytes(),
        deadline: deadline, retry: retry)
    }
    guard let client = self.clients[name] else {
      throw RPCError(code: .unavailable, message: "no upstream configured for \(route.method.service)")
    }
    return try await client.client.unary(
      request: request, descriptor: route.method.descriptor, serializer: ProtobufSerializer<Request>(), deserializer: ReplyBytes(),
      deadline: deadline, retry: retry)
  }
}

/// A reply's serialized message as it arrived: decoded later, and only when it isn't already
/// rendered (`RenderCache`).
struct ReplyBytes: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}

/// The wire the gateway's unary routes call the services over.
public enum UpstreamTransport: String, Sendable, CaseIterable {
  /// Quizwire's framed wire (the default): breakers per replica, more connections as needed.
  case framed
  /// Standard gRPC over HTTP/2, to the services' gRPC ports: for comparing the two wires.
  case h2
}
