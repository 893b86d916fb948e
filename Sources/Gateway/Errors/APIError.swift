import Foundation
import GRPCCore
import GRPCProtobuf

/// An error as the gateway answers it: the HTTP status, the canonical code name, the
/// service's `ErrorInfo.reason` when there is one, a message, and the typed details
/// clients branch on. Upstream errors and the gateway's own refusals share this shape.
public struct APIError: Error, Sendable, Hashable {
  /// One `error.details` entry, in protobuf's JSON form of the `google.rpc` detail messages.
  public enum Detail: Sendable, Hashable {
    case errorInfo(reason: String, domain: String, metadata: [String: String])
    case badRequest([FieldViolation])
    case retryInfo(Duration)
  }

  /// A field of the request that is wrong, named by its path (`quiz.questions[0].prompt`).
  public struct FieldViolation: Sendable, Hashable {
    public var field: String
    public var description: String
    public init(field: String, description: String) {
      self.field = field
      self.description = description
    }
  }

  public var httpStatus: Int
  public var status: String
  public var reason: String?
  public var message: String
  public var details: [Detail]
  /// Response headers the status table asks for (`WWW-Authenticate`, `Retry-After`, `Allow`).
  public var headers: [String: String] = [:]

  public init(httpStatus: Int, status: String, reason: String? = nil, message: String, details: [Detail] = []) {
    self.httpStatus = httpStatus
    self.status = status
    self.reason = reason
    self.message = message
    self.details = details
  }

  /// A refusal of the gateway's own (bad route, bad body …), before any RPC.
  public static func gateway(_ httpStatus: Int, _ message: String, violations: [FieldViolation] = []) -> APIError {
    APIError(
      httpStatus: httpStatus, status: StatusTable.gatewayStatus(httpStatus), message: message,
      details: violations.isEmpty ? [] : [.badRequest(violations)])
  }

  /// An upstream failure through the status table: details from `grpc-status-details-bin`
  /// (ErrorInfo, BadRequest, RetryInfo), the challenge on 401, `Retry-After` on 429/503.
  /// A 500 says only "internal error": the upstream message may name internals.
  public static func from(_ error: RPCError) -> APIError {
    let row = StatusTable.row(for: error.code)
    let status = try? error.unpackGoogleRPCStatus()
    var details: [Detail] = []
    var reason: String?
    for detail in status?.details ?? [] {
      if let info = detail.errorInfo {
        reason = reason ?? info.reason
        details.append(.errorInfo(reason: info.reason, domain: info.domain, metadata: info.metadata))
      } else if let request = detail.badRequest {
        details.append(.badRequest(request.violations.map { FieldViolation(field: $0.field, description: $0.violationDescription) }))
      } else if let retry = detail.retryInfo {
        details.append(.retryInfo(retry.delay))
      }
    }
    let exposed = StatusTable.exposesMessage(error.code)
    var result = APIError(
      httpStatus: row.httpStatus, status: row.status, reason: exposed ? reason : nil,
      message: exposed ? (status?.message ?? error.message) : "internal error", details: exposed ? details : [])
    if row.challenge {
      result.headers["WWW-Authenticate"] = #"Bearer realm="quizwire""#
    }
    if row.retryAfter {
      let delay = details.lazy.compactMap { detail -> Duration? in
        if case .retryInfo(let delay) = detail { return delay }
        return nil
      }.first
      // 429 always says when to come back (1 s when the service didn't); 503 only when told.
      if let seconds = delay.map(Self.wholeSeconds) ?? (row.httpStatus == 429 ? 1 : nil) {
        result.headers["Retry-After"] = "\(seconds)"
      }
    }
    return result
  }

  /// `from(error)`, except that a stale etag the client sent as `If-Match` is 412 instead of
  /// ABORTED's 409: the client's precondition failed (RFC 9110 §13.1.1), which it handles by
  /// reading again, unlike a conflict it may simply retry. Only the services' ETAG_MISMATCH
  /// reason counts; any other ABORTED stays 409.
  public static func from(_ error: RPCError, ifMatchSent: Bool) -> APIError {
    var result = Self.from(error)
    if ifMatchSent, error.code == .aborted, result.reason == Self.etagMismatchReason { result.httpStatus = 412 }
    return result
  }

  /// The `ErrorInfo.reason` quiz answers a stale etag with (quiz.proto).
  public static let etagMismatchReason = "ETAG_MISMATCH"

  /// A delay as whole seconds, rounded up (Retry-After has no fractions), at least 1.
  static func wholeSeconds(_ delay: Duration) -> Int {
    let (seconds, attoseconds) = delay.components
    return max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
  }

  /// `error` as a JSON object: `{"code", "status", "reason"?, "message", "details"}`.
  var jsonObject: [String: Any] {
    var object: [String: Any] = [
      "code": self.httpStatus, "status": self.status, "message": self.message,
      "details": self.details.map(\.jsonObject),
    ]
    if let reason = self.reason { object["reason"] = reason }
    return object
  }
}

extension APIError {
  /// `jsonObject` as JSON text, written by hand in the same (sorted) key order.
  var json: String {
    var out = #"{"code":\#(self.httpStatus),"details":["# + self.details.map(\.json).joined(separator: ",") + "]"
    out += #","message":"# + Envelope.quoted(self.message)
    if let reason = self.reason { out += #","reason":"# + Envelope.quoted(reason) }
    return out + #","status":"# + Envelope.quoted(self.status) + "}"
  }
}

extension APIError.Detail {
  /// `jsonObject` as JSON text, keys sorted.
  var json: String {
    switch self {
    case .errorInfo(let reason, let domain, let metadata):
      let entries = metadata.sorted { $0.key < $1.key }.map { Envelope.quoted($0.key) + ":" + Envelope.quoted($0.value) }
      return #"{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"# + Envelope.quoted(domain) + #","metadata":{"#
        + entries.joined(separator: ",") + #"},"reason":"# + Envelope.quoted(reason) + "}"
    case .badRequest(let violations):
      let items = violations.map { #"{"description":"# + Envelope.quoted($0.description) + #","field":"# + Envelope.quoted($0.field) + "}" }
      return #"{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":["# + items.joined(separator: ",") + "]}"
    case .retryInfo:
      let delay = self.jsonObject["retryDelay"] as? String ?? "0s"
      return #"{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"# + Envelope.quoted(delay) + "}"
    }
  }

  /// protobuf's JSON mapping of the detail, with the `@type` of a packed `Any`.
  var jsonObject: [String: Any] {
    switch self {
    case .errorInfo(let reason, let domain, let metadata):
      return ["@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain, "metadata": metadata]
    case .badRequest(let violations):
      return [
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": violations.map { ["field": $0.field, "description": $0.description] },
      ]
    case .retryInfo(let delay):
      let (seconds, attoseconds) = delay.components
      let text = attoseconds == 0 ? "\(seconds)s" : String(format: "%.3fs", Double(seconds) + Double(attoseconds) / 1e18)
      return ["@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": text]
    }
  }
}
