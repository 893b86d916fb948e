import GRPCCore
import Logging
import ServiceContextModule

/// Innermost server interceptor: the one place where an error a handler throws that has no
/// status of its own — neither `RPCError` nor `RPCErrorConvertible` — becomes one.
///
/// The caller gets INTERNAL with a short random error id and nothing else ("internal error
/// (error id 3f9c0a7e21b4)"): never GRPCCore's UNKNOWN, never the error's text, which may name
/// tables, hosts or files. The same id, the error's description and the request id go into one
/// error-level log line ("unhandled error"), so the id a caller quotes leads to the cause.
///
/// It covers errors from the handler and, for streaming responses, from the response producer
/// (after the response headers went out). `RPCError`, `RPCErrorConvertible` and
/// `CancellationError` pass through untouched: their codes are the handler's own, and a
/// handler cancelled because its call ended is reported CANCELLED by the access log and metrics.
public struct ErrorConversionInterceptor: ServerInterceptor {
  private let logger: Logger
  private let service: String

  public init(logger: Logger, service: String) {
    self.logger = logger
    self.service = service
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let converter = Converter(
      logger: self.logger, service: self.service, method: context.descriptor.fullyQualifiedMethod,
      peer: context.remotePeer, call: ServiceContext.current?.call)
    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      throw converter.convert(error)
    }
    return response.mapProducer { producer in
      { writer in
        do {
          return try await producer(writer)
        } catch {
          throw converter.convert(error)
        }
      }
    }
  }

  /// Whether `error` already says which status the call ends with (or that it was cancelled).
  static func isStatusBearing(_ error: any Error) -> Bool {
    error is RPCError || error is any RPCErrorConvertible || error is CancellationError
  }

  /// 12 random hex digits: short enough to quote, unique enough to find one log line.
  static func makeErrorID() -> String {
    let hex = String(UInt64.random(in: 0...0xFFFF_FFFF_FFFF), radix: 16)
    return String(repeating: "0", count: 12 - hex.count) + hex
  }

  /// The message a caller sees for error `id`.
  static func message(errorID id: String) -> String { "internal error (error id \(id))" }

  /// What one call's conversion needs, captured when the call enters (a streaming producer
  /// runs after `intercept` returned).
  private struct Converter: Sendable {
    let logger: Logger
    let service: String
    let method: String
    let peer: String
    let call: CallInfo?

    func convert(_ error: any Error) -> any Error {
      // Converted here, innermost, so the interceptors outside (request id, access log,
      // metrics) all see the final status.
      if let convertible = error as? any RPCErrorConvertible, !(error is RPCError) { return RPCError(convertible) }
      guard !ErrorConversionInterceptor.isStatusBearing(error) else { return error }
      let id = ErrorConversionInterceptor.makeErrorID()
      var metadata: Logger.Metadata = [
        "error_id": .string(id),
        "error": .string(String(describing: error)),
        "error_type": .string(String(reflecting: type(of: error))),
        "service": .string(self.service),
        "method": .string(self.method),
        "peer": .string(self.peer),
      ]
      if let call = self.call { metadata["request_id"] = .string(call.requestID) }
      self.logger.error("unhandled error", metadata: metadata)
      // The cause stays in-process (tracing, tests); only code and message go on the wire.
      return RPCError(code: .internalError, message: ErrorConversionInterceptor.message(errorID: id), cause: error)
    }
  }
}
