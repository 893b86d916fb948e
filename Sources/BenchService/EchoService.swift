import GRPCCore
import QuizwireProtos

/// `bench.v1.EchoService`: the service the benchmarks, the load tool and the interop clients
/// drive. Its behaviour is part of the public contract (protos/bench/v1/echo.proto).
public struct EchoService: Bench_V1_EchoService.SimpleServiceProtocol {
  /// Largest `count` a ServerStream call may ask for, so one request can't pin a server forever.
  public static let maxServerStreamCount: UInt32 = 10_000_000

  public init() {}

  public func unary(request: Bench_V1_EchoRequest, context: ServerContext) async throws -> Bench_V1_EchoResponse {
    var response = Bench_V1_EchoResponse()
    response.payload = request.payload
    return response
  }

  public func serverStream(
    request: Bench_V1_EchoRequest, response: RPCWriter<Bench_V1_EchoResponse>, context: ServerContext
  ) async throws {
    guard request.count <= Self.maxServerStreamCount else {
      throw RPCError(code: .invalidArgument, message: "count must be at most \(Self.maxServerStreamCount), got \(request.count)")
    }
    var message = Bench_V1_EchoResponse()
    message.payload = request.payload
    for index in 0..<request.count {
      message.index = index
      try await response.write(message)
    }
  }

  public func clientStream(
    request: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>, context: ServerContext
  ) async throws -> Bench_V1_EchoResponse {
    var response = Bench_V1_EchoResponse()
    var received: UInt32 = 0
    for try await message in request {
      received += 1
      response.payload = message.payload
    }
    response.index = received
    return response
  }

  public func bidi(
    request: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>, response: RPCWriter<Bench_V1_EchoResponse>,
    context: ServerContext
  ) async throws {
    var index: UInt32 = 0
    for try await message in request {
      var reply = Bench_V1_EchoResponse()
      reply.payload = message.payload
      reply.index = index
      index += 1
      try await response.write(reply)
    }
  }
}
