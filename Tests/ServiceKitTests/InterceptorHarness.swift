import GRPCCore
import NIOConcurrencyHelpers
import ServiceKit

/// Runs a call through server interceptors the way GRPCCore's executor does — interceptors
/// in order, then the handler, then the response producer — without any transport. Errors
/// become statuses as GRPCCore makes them: `RPCError` as is, `RPCErrorConvertible` converted,
/// anything else UNKNOWN.
enum Harness {
  static let method = MethodDescriptor(fullyQualifiedService: "test.v1.Probe", method: "Call")

  struct Outcome<Output: Sendable>: Sendable {
    var messages: [Output]
    var initialMetadata: Metadata
    var trailers: Metadata
    var error: RPCError?
  }

  static func run<Input: Sendable, Output: Sendable>(
    _ interceptors: [any ServerInterceptor],
    metadata: Metadata = [:],
    messages: [Input],
    method: MethodDescriptor = Harness.method,
    peer: String = "ipv4:127.0.0.1:5555",
    handler: @escaping @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async -> Outcome<Output> {
    let request = StreamingServerRequest(
      metadata: metadata,
      messages: RPCAsyncSequence(
        wrapping: AsyncStream<Input> { c in
          for m in messages { c.yield(m) }
          c.finish()
        }.map { $0 }))
    let context = ServerContext(descriptor: method, remotePeer: peer, localPeer: "ipv4:127.0.0.1:1", cancellation: .init())
    let response: StreamingServerResponse<Output>
    do {
      response = try await chain(interceptors[...], request, context, handler)
    } catch let error as RPCError {
      return Outcome(messages: [], initialMetadata: [:], trailers: error.metadata, error: error)
    } catch let convertible as any RPCErrorConvertible {
      let error = RPCError(convertible)  // as GRPCCore converts it
      return Outcome(messages: [], initialMetadata: [:], trailers: error.metadata, error: error)
    } catch {
      return Outcome(messages: [], initialMetadata: [:], trailers: [:], error: RPCError(code: .unknown, message: "\(error)"))
    }
    switch response.accepted {
    case .failure(let error):
      return Outcome(messages: [], initialMetadata: [:], trailers: error.metadata, error: error)
    case .success(let contents):
      let sink = Collector<Output>()
      do {
        let trailers = try await contents.producer(RPCWriter(wrapping: sink))
        return Outcome(messages: sink.items, initialMetadata: contents.metadata, trailers: trailers, error: nil)
      } catch let error as RPCError {
        return Outcome(messages: sink.items, initialMetadata: contents.metadata, trailers: error.metadata, error: error)
      } catch let convertible as any RPCErrorConvertible {
        let error = RPCError(convertible)
        return Outcome(messages: sink.items, initialMetadata: contents.metadata, trailers: error.metadata, error: error)
      } catch {
        return Outcome(messages: sink.items, initialMetadata: contents.metadata, trailers: [:], error: RPCError(code: .unknown, message: "\(error)"))
      }
    }
  }

  private static func chain<Input: Sendable, Output: Sendable>(
    _ rest: ArraySlice<any ServerInterceptor>,
    _ request: StreamingServerRequest<Input>, _ context: ServerContext,
    _ handler: @escaping @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard let first = rest.first else { return try await handler(request, context) }
    let remaining = rest.dropFirst()
    return try await first.intercept(request: request, context: context) { request, context in
      try await chain(remaining, request, context, handler)
    }
  }

  /// A unary echo-ish handler: reads one message, answers `reply(message)`.
  static func unary<Input: Sendable, Output: Sendable>(
    _ reply: @escaping @Sendable (Input) async throws -> Output
  ) -> @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output> {
    { request, _ in
      var iterator = request.messages.makeAsyncIterator()
      guard let message = try await iterator.next() else { throw RPCError(code: .internalError, message: "no message") }
      let answer = try await reply(message)
      return StreamingServerResponse(single: ServerResponse(message: answer))
    }
  }
}

final class Collector<Element: Sendable>: RPCWriterProtocol, Sendable {
  private let box = NIOLockedValueBox<[Element]>([])
  var items: [Element] { self.box.withLockedValue { $0 } }
  func write(_ element: Element) async throws { self.box.withLockedValue { $0.append(element) } }
  func write(contentsOf elements: some Sequence<Element>) async throws {
    for e in elements { try await self.write(e) }
  }
}
