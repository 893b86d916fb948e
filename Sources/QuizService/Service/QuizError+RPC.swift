import GRPCCore
import GRPCProtobuf

/// Quiz errors reach callers with their own status, mapped here once: a stale etag is ABORTED
/// with `ErrorInfo.reason = "ETAG_MISMATCH"` (the gateway's 412), a state that forbids the
/// call is FAILED_PRECONDITION with a `PreconditionFailure`, limits and bad arguments are
/// INVALID_ARGUMENT with a `BadRequest` naming the field.
extension QuizError: RPCErrorConvertible {
  public static let errorDomain = "quiz.quizwire"

  public var rpcErrorCode: RPCError.Code { self.status.code }
  public var rpcErrorMessage: String { self.status.message }
  public var rpcErrorMetadata: Metadata { self.status.rpcErrorMetadata }

  var status: GoogleRPCStatus {
    switch self {
    case .notFound(let id):
      return GoogleRPCStatus(code: .notFound, message: "quiz \(id) not found", details: [])
    case .permissionDenied(let why):
      return GoogleRPCStatus(code: .permissionDenied, message: why, details: [])
    case .etagMismatch(let id):
      return GoogleRPCStatus(
        code: .aborted, message: "quiz \(id) changed since the etag given was read; read it again and retry",
        details: [.errorInfo(reason: "ETAG_MISMATCH", domain: Self.errorDomain, metadata: ["quiz_id": id])])
    case .failedPrecondition(let type, let subject, let description):
      return GoogleRPCStatus(
        code: .failedPrecondition, message: description,
        details: [.preconditionFailure(violations: [.init(type: type, subject: subject, description: description)])])
    case .limitExceeded(let field, let limit, let description):
      return GoogleRPCStatus(
        code: .invalidArgument, message: "\(field): \(description) (limit \(limit))",
        details: [.badRequest(violations: [.init(field: field, description: "\(description) (limit \(limit))")])])
    case .invalidArgument(let field, let description):
      return GoogleRPCStatus(
        code: .invalidArgument, message: "invalid request: \(field): \(description)",
        details: [.badRequest(violations: [.init(field: field, description: description)])])
    }
  }
}
