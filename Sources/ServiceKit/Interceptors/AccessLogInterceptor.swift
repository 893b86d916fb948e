import GRPCCore
import Logging
import ServiceContextModule

/// One structured log line per call when it ends: method, status, duration, peer, request id
/// and principal. Payloads and credentials are never logged.
public struct AccessLogInterceptor: ServerInterceptor {
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
    let start = ContinuousClock.now
    let info = ServiceContext.current?.call
    let logger = self.logger
    let service = self.service
    let method = context.descriptor.fullyQualifiedMethod
    let peer = context.remotePeer
    return try await CallObservation.run(request: request, context: context, next: next) { code in
      // Server-side faults are errors; the caller's own mistakes are routine.
      let level: Logger.Level = [.internalError, .unknown, .dataLoss, .unimplemented].contains(code) ? .error : .info
      // Nothing is built for a line the level drops.
      guard logger.logLevel <= level else { return }
      let ms = (ContinuousClock.now - start).inMilliseconds
      var metadata: Logger.Metadata = [
        "service": .string(service),
        "method": .string(method),
        "status": .string(Self.name(of: code)),
        "code": .stringConvertible(code.rawValue),
        "duration_ms": .stringConvertible((ms * 1000).rounded() / 1000),
        "peer": .string(peer),
      ]
      if let info {
        metadata["request_id"] = .string(info.requestID)
        if let principal = info.principal { metadata["principal"] = .string(principal.description) }
      }
      logger.log(level: level, "rpc", metadata: metadata)
    }
  }

  /// gRPC's canonical upper-case names (OK, NOT_FOUND, …).
  public static func name(of code: Status.Code) -> String {
    switch code {
    case .ok: "OK"
    case .cancelled: "CANCELLED"
    case .unknown: "UNKNOWN"
    case .invalidArgument: "INVALID_ARGUMENT"
    case .deadlineExceeded: "DEADLINE_EXCEEDED"
    case .notFound: "NOT_FOUND"
    case .alreadyExists: "ALREADY_EXISTS"
    case .permissionDenied: "PERMISSION_DENIED"
    case .resourceExhausted: "RESOURCE_EXHAUSTED"
    case .failedPrecondition: "FAILED_PRECONDITION"
    case .aborted: "ABORTED"
    case .outOfRange: "OUT_OF_RANGE"
    case .unimplemented: "UNIMPLEMENTED"
    case .internalError: "INTERNAL"
    case .unavailable: "UNAVAILABLE"
    case .dataLoss: "DATA_LOSS"
    case .unauthenticated: "UNAUTHENTICATED"
    default: "CODE_\(code.rawValue)"
    }
  }
}
