import GRPCCore
import Instrumentation
import ServiceContextModule
import Tracing

/// Reads and writes gRPC metadata for trace propagation.
struct MetadataCarrier: Extractor, Injector {
  typealias Carrier = Metadata
  func extract(key: String, from carrier: Metadata) -> String? { carrier.first(key) }
  func inject(_ value: String, forKey key: String, into carrier: inout Metadata) {
    carrier.replaceOrAddString(value, forKey: key)
  }
}

/// One server span per call, continuing the caller's `traceparent`. The span is current for
/// the handler (and its producer), so downstream calls carry it on.
public struct ServerTracingInterceptor<T: Tracer>: ServerInterceptor {
  public let tracer: T
  public init(tracer: T) { self.tracer = tracer }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var parent = ServiceContext.current ?? .topLevel
    self.tracer.extract(request.metadata, into: &parent, using: MetadataCarrier())
    let span = self.tracer.startSpan(context.descriptor.fullyQualifiedMethod, context: parent, ofKind: .server)
    // In one update: each single `attributes[…] =` copies the whole set.
    let requestID = parent.call?.requestID
    span.updateAttributes { attributes in
      attributes["rpc.system"] = "grpc"
      attributes["rpc.service"] = context.descriptor.service.fullyQualifiedService
      attributes["rpc.method"] = context.descriptor.method
      if let requestID { attributes["quizwire.request_id"] = requestID }
    }
    return try await ServiceContext.withValue(span.context) {
      try await CallObservation.run(request: request, context: context, next: next, restoreContext: true) { code in
        span.attributes["rpc.grpc.status_code"] = code.rawValue
        if code != .ok { span.setStatus(SpanStatus(code: .error, message: AccessLogInterceptor.name(of: code))) }
        span.end()
      }
    }
  }
}

/// Client side: a client span per call, `traceparent` and `x-request-id` of the current call
/// injected, and the remaining deadline of the current call (if sooner) as `grpc-timeout`.
public struct ClientPropagationInterceptor<T: Tracer>: ClientInterceptor {
  public let tracer: T
  public init(tracer: T) { self.tracer = tracer }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    let current = ServiceContext.current ?? .topLevel
    let span = self.tracer.startSpan(context.descriptor.fullyQualifiedMethod, context: current, ofKind: .client)
    span.updateAttributes { attributes in
      attributes["rpc.system"] = "grpc"
      attributes["net.peer"] = context.remotePeer
    }
    self.tracer.inject(span.context, into: &request.metadata, using: MetadataCarrier())
    if let call = current.call {
      if request.metadata.first(RequestIDInterceptor.key) == nil {
        request.metadata.addString(call.requestID, forKey: RequestIDInterceptor.key)
      }
      if let deadline = call.deadline {
        let remaining = ContinuousClock.now.duration(to: deadline)
        // The caller's budget is spent: don't start a downstream call it can't wait for.
        guard remaining > .zero else {
          span.setStatus(SpanStatus(code: .error, message: "DEADLINE_EXCEEDED"))
          span.end()
          throw RPCError(code: .deadlineExceeded, message: "deadline exceeded before the downstream call")
        }
        let existing = request.metadata.first("grpc-timeout").flatMap(GRPCTimeout.parse)
        if existing.map({ remaining < $0 }) ?? true {
          request.metadata.replaceOrAddString(GRPCTimeout.format(remaining), forKey: "grpc-timeout")
        }
      }
    }
    do {
      let response = try await next(request, context)
      if case .failure(let error) = response.accepted {
        span.setStatus(SpanStatus(code: .error, message: "\(error.code)"))
      }
      span.end()
      return response
    } catch {
      span.recordError(error)
      span.setStatus(SpanStatus(code: .error))
      span.end()
      throw error
    }
  }
}
