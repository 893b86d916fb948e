import BenchService
import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import NIOConcurrencyHelpers
import QuizwireProtos
import XCTest

/// What test handlers observed, for assertions from the client side.
final class Probe: Sendable {
  private let state = NIOLockedValueBox((cancelled: 0, written: 0, calls: 0))
  func cancelled() { self.state.withLockedValue { $0.cancelled += 1 } }
  func wrote() { self.state.withLockedValue { $0.written += 1 } }
  func called() { self.state.withLockedValue { $0.calls += 1 } }
  var cancelCount: Int { self.state.withLockedValue { $0.cancelled } }
  var writeCount: Int { self.state.withLockedValue { $0.written } }
  var callCount: Int { self.state.withLockedValue { $0.calls } }

  /// Polls `condition` for up to `timeout`; deterministic tests wait for events, not for time.
  func eventually(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if condition() { return true }
      try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
  }
}

/// `bench.v1.EchoService` with test controls in the payload text:
/// `status:N` fails with code N and rich details; `sleep:MS` answers after MS ms;
/// `echo-metadata` returns the request's `x-` metadata as initial metadata plus a trailer;
/// ServerStream with payload `slow:MS` waits MS ms between messages.
struct ControlledEchoService: Bench_V1_EchoService.ServiceProtocol {
  let probe: Probe

  func unary(request: ServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> ServerResponse<Bench_V1_EchoResponse> {
    self.probe.called()
    let text = String(decoding: request.message.payload, as: UTF8.self)
    var reply = Bench_V1_EchoResponse()
    reply.payload = request.message.payload
    if text.hasPrefix("status:"), let n = Int(text.dropFirst(7)), let code = RPCError.Code(Status.Code(rawValue: n)!) {
      throw GoogleRPCStatus(
        code: code, message: "failed with \(n) — ünïcode ok",
        details: [
          .errorInfo(reason: "TEST_\(n)", domain: "quizwire.test", metadata: ["n": "\(n)"]),
          .badRequest(violations: [.init(field: "payload", description: "asked to fail")]),
        ])
    }
    if text.hasPrefix("sleep:"), let ms = Int(text.dropFirst(6)) {
      do {
        try await Task.sleep(for: .milliseconds(ms))
      } catch {
        self.probe.cancelled()
        throw error
      }
    }
    if text == "echo-metadata" {
      var initial = Metadata()
      for entry in request.metadata where entry.key.hasPrefix("x-") {
        switch entry.value {
        case .string(let v): initial.addString(v, forKey: entry.key)
        case .binary(let v): initial.addBinary(v, forKey: entry.key)
        }
      }
      return ServerResponse(message: reply, metadata: initial, trailingMetadata: ["x-trailer": "done", "x-trailer-bin": .binary([0, 1, 255])])
    }
    return ServerResponse(message: reply)
  }

  func serverStream(request: ServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> StreamingServerResponse<Bench_V1_EchoResponse> {
    self.probe.called()
    let text = String(decoding: request.message.payload, as: UTF8.self)
    let delay = text.hasPrefix("slow:") ? Int(text.dropFirst(5)) ?? 0 : 0
    let count = request.message.count
    let payload = request.message.payload
    let probe = self.probe
    return StreamingServerResponse { writer in
      do {
        for i in 0..<count {
          var m = Bench_V1_EchoResponse()
          m.payload = payload
          m.index = i
          try await writer.write(m)
          probe.wrote()
          if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
        }
      } catch {
        probe.cancelled()
        throw error
      }
      return [:]
    }
  }

  func clientStream(request: StreamingServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> ServerResponse<Bench_V1_EchoResponse> {
    self.probe.called()
    var reply = Bench_V1_EchoResponse()
    for try await m in request.messages {
      reply.index += 1
      reply.payload = m.payload
    }
    return ServerResponse(message: reply)
  }

  func bidi(request: StreamingServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> StreamingServerResponse<Bench_V1_EchoResponse> {
    self.probe.called()
    let probe = self.probe
    return StreamingServerResponse { writer in
      var i: UInt32 = 0
      do {
        for try await m in request.messages {
          var r = Bench_V1_EchoResponse()
          r.payload = m.payload
          r.index = i
          i += 1
          try await writer.write(r)
        }
      } catch {
        probe.cancelled()
        throw error
      }
      return [:]
    }
  }
}

/// A running framed server on 127.0.0.1, port 0 unless given.
final class FramedTestServer: Sendable {
  let transport: FramedServerTransport
  let server: GRPCServer<FramedServerTransport>
  let task: Task<Void, any Error>
  let target: FramedTarget

  init(
    services: [any RegistrableRPCService], interceptors: [any ServerInterceptor] = [], port: Int = 0,
    configure: (inout FramedServerTransport.Config) -> Void = { _ in }
  ) async throws {
    var config = FramedServerTransport.Config(host: "127.0.0.1", port: port)
    configure(&config)
    let transport = try FramedServerTransport(config: config)
    let server = GRPCServer(transport: transport, services: services, interceptors: interceptors)
    self.transport = transport
    self.server = server
    self.task = Task { try await server.serve() }
    let address = try await transport.listeningAddress
    self.target = FramedTarget(host: "127.0.0.1", port: address.port!)
  }

  /// Graceful: GOAWAY drain, in-flight calls finish.
  func drain() async throws {
    self.server.beginGracefulShutdown()
    try await self.task.value
  }

  /// Abrupt: every connection closed now (as if the process died).
  func kill() async {
    self.task.cancel()
    _ = try? await self.task.value
  }
}

/// A running gRPC/HTTP2 server with the same services.
final class H2TestServer: Sendable {
  let server: GRPCServer<HTTP2ServerTransport.Posix>
  let task: Task<Void, any Error>
  let port: Int

  init(services: [any RegistrableRPCService], interceptors: [any ServerInterceptor] = []) async throws {
    let transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext,
      config: .defaults { $0.compression.enabledAlgorithms = .all })
    let server = GRPCServer(transport: transport, services: services, interceptors: interceptors)
    self.server = server
    self.task = Task { try await server.serve() }
    self.port = try await transport.listeningAddress.ipv4!.port
  }

  func stop() async throws {
    self.server.beginGracefulShutdown()
    try await self.task.value
  }
}

func framedClientConfig(_ targets: [FramedTarget]) -> FramedClientTransport.Config {
  var c = FramedClientTransport.Config(targets: targets)
  c.backoff = Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))
  return c
}

func withFramedClient<R: Sendable>(
  _ targets: [FramedTarget], configure: (inout FramedClientTransport.Config) -> Void = { _ in },
  _ body: (GRPCClient<FramedClientTransport>) async throws -> R
) async throws -> R {
  var config = framedClientConfig(targets)
  configure(&config)
  return try await withGRPCClient(transport: try FramedClientTransport(config: config), handleClient: body)
}

func withH2Client<R: Sendable>(port: Int, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
  let transport = try HTTP2ClientTransport.Posix(
    target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext,
    config: .defaults { $0.compression.enabledAlgorithms = .all })
  return try await withGRPCClient(transport: transport, handleClient: body)
}

func echoRequest(_ text: String, count: UInt32 = 0) -> Bench_V1_EchoRequest {
  var r = Bench_V1_EchoRequest()
  r.payload = Data(text.utf8)
  r.count = count
  return r
}

func echoRequest(bytes: Int, count: UInt32 = 0) -> Bench_V1_EchoRequest {
  var r = Bench_V1_EchoRequest()
  r.payload = Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31) })
  r.count = count
  return r
}

/// Runs `body` and returns the RPCError it threw (failing if it didn't throw one).
func expectRPCError(_ body: () async throws -> Void, file: StaticString = #filePath, line: UInt = #line) async -> RPCError? {
  do {
    try await body()
    XCTFail("expected an RPCError", file: file, line: line)
    return nil
  } catch let error as RPCError {
    return error
  } catch {
    XCTFail("expected an RPCError, got \(error)", file: file, line: line)
    return nil
  }
}
