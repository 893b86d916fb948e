import GRPCCore
import ServiceKit

/// The one place where an RPC status becomes an HTTP status (docs/services.md, "Gateway").
///
/// Every error the gateway returns — an upstream failure or its own refusal — goes through
/// this table, so a client can rely on the same status for the same condition everywhere.
public enum StatusTable {
  /// One row: the HTTP status for a canonical code, and the headers that row requires.
  public struct Row: Sendable, Hashable {
    public var httpStatus: Int
    /// The canonical name of the code (`NOT_FOUND`), sent as `error.status`.
    public var status: String
    /// `WWW-Authenticate: Bearer` on 401: RFC 6750 asks for the challenge.
    public var challenge: Bool
    /// `Retry-After` on 429 and 503 (when the service said how long in a RetryInfo).
    public var retryAfter: Bool
  }

  /// gRPC's code names, as `error.status` spells them (the access log's spelling).
  public static func name(of code: RPCError.Code) -> String {
    AccessLogInterceptor.name(of: Status.Code(code))
  }

  /// The row for `code`. FAILED_PRECONDITION is 422: the services use it for business rules
  /// (publishing an empty quiz), which the request itself can't fix by being well-formed.
  /// Everything not listed (INTERNAL, UNKNOWN, DATA_LOSS) is 500 and its message is withheld.
  public static func row(for code: RPCError.Code) -> Row {
    let status = name(of: code)
    switch code {
    case .invalidArgument, .outOfRange: return Row(httpStatus: 400, status: status, challenge: false, retryAfter: false)
    case .unauthenticated: return Row(httpStatus: 401, status: status, challenge: true, retryAfter: false)
    case .permissionDenied: return Row(httpStatus: 403, status: status, challenge: false, retryAfter: false)
    case .notFound: return Row(httpStatus: 404, status: status, challenge: false, retryAfter: false)
    case .alreadyExists, .aborted: return Row(httpStatus: 409, status: status, challenge: false, retryAfter: false)
    case .failedPrecondition: return Row(httpStatus: 422, status: status, challenge: false, retryAfter: false)
    case .resourceExhausted: return Row(httpStatus: 429, status: status, challenge: false, retryAfter: true)
    case .cancelled: return Row(httpStatus: 499, status: status, challenge: false, retryAfter: false)
    case .unimplemented: return Row(httpStatus: 501, status: status, challenge: false, retryAfter: false)
    case .unavailable: return Row(httpStatus: 503, status: status, challenge: false, retryAfter: true)
    case .deadlineExceeded: return Row(httpStatus: 504, status: status, challenge: false, retryAfter: false)
    default: return Row(httpStatus: 500, status: status, challenge: false, retryAfter: false)
    }
  }

  /// Whether the upstream message may be shown: a 500's message can carry internals.
  public static func exposesMessage(_ code: RPCError.Code) -> Bool { row(for: code).httpStatus != 500 }

  /// The canonical name for a status the gateway refuses with itself (404 route, 405, 413 …).
  public static func gatewayStatus(_ httpStatus: Int) -> String {
    switch httpStatus {
    case 400: "INVALID_ARGUMENT"
    case 403: "PERMISSION_DENIED"
    case 404: "NOT_FOUND"
    case 405: "METHOD_NOT_ALLOWED"
    case 413: "PAYLOAD_TOO_LARGE"
    case 415: "UNSUPPORTED_MEDIA_TYPE"
    case 431: "REQUEST_HEADER_FIELDS_TOO_LARGE"
    default: "INTERNAL"
    }
  }
}
