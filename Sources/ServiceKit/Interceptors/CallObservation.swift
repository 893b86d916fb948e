import GRPCCore
import ServiceContextModule
import Synchronization

/// The producer of a streaming response: GRPCCore runs it after every interceptor has
/// returned, so anything that must span the whole call wraps it too.
public typealias ResponseProducer<Output: Sendable> = @Sendable (RPCWriter<Output>) async throws -> Metadata

extension StreamingServerResponse {
  /// The same response with its producer replaced by `transform(producer)`.
  public func mapProducer(_ transform: (@escaping ResponseProducer<Message>) -> ResponseProducer<Message>) -> Self {
    guard case .success(var contents) = self.accepted else { return self }
    contents.producer = transform(contents.producer)
    return StreamingServerResponse(accepted: .success(contents))
  }
}

/// Runs a call — `next`, then the response producer — calling `finished` exactly once with the
/// final status code, as the client will see it. With `restoreContext` the producer runs in
/// the `ServiceContext` that was current when the call entered, so task-local call info
/// survives into streaming handlers.
enum CallObservation {
  static func run<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>,
    restoreContext: Bool = false,
    finished: @escaping @Sendable (Status.Code) -> Void
  ) async throws -> StreamingServerResponse<Output> {
    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      finished(Self.code(of: error))
      throw error
    }
    if case .failure(let error) = response.accepted {
      finished(Status.Code(error.code))
      return response
    }
    // Only an interceptor that changed the context re-establishes it (each re-establishment
    // is another frame on every streaming call's stack for as long as it runs).
    let serviceContext = restoreContext ? ServiceContext.current : nil
    let completion = CallCompletion(finished)
    return response.mapProducer { producer in
      { writer in
        do {
          let trailers: Metadata
          if let serviceContext {
            trailers = try await ServiceContext.withValue(serviceContext) { try await producer(writer) }
          } else {
            trailers = try await producer(writer)
          }
          completion.complete(.ok)
          return trailers
        } catch {
          completion.complete(Self.code(of: error))
          throw error
        }
      }
    }
  }

  /// Calls `finished` once: with the producer's outcome, or with CANCELLED when the producer is
  /// released without having run. GRPCCore runs the producer only once the response headers
  /// are written; a client that resets the call first (the gRPC/HTTP2 transport drops those
  /// headers by throwing) leaves it unrun, and without this the call would never end for the
  /// interceptors — `rpc_server_in_flight` counted it forever.
  final class CallCompletion: Sendable {
    private let done = Mutex(false)
    private let finished: @Sendable (Status.Code) -> Void

    init(_ finished: @escaping @Sendable (Status.Code) -> Void) { self.finished = finished }

    func complete(_ code: Status.Code) {
      let first = self.done.withLock { done in
        defer { done = true }
        return !done
      }
      if first { self.finished(code) }
    }

    deinit { self.complete(.cancelled) }
  }

  /// The code GRPCCore will send for `error` (anything without a status becomes UNKNOWN; in
  /// the standard stack `ErrorConversionInterceptor` has made such errors INTERNAL already).
  static func code(of error: any Error) -> Status.Code {
    if let rpc = error as? RPCError { return Status.Code(rpc.code) }
    // The transport cancels a handler when its call ended (deadline, reset): not a server fault.
    if error is CancellationError { return .cancelled }
    if let convertible = error as? any RPCErrorConvertible { return Status.Code(convertible.rpcErrorCode) }
    return .unknown
  }
}
