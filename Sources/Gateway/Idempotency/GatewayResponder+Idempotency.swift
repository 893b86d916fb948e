import Foundation
import GRPCCore
import Hummingbird
import Logging
import NIOCore
import Storage
import Synchronization

/// `Idempotency-Key` around the unary call of a creating route: the rules are
/// `IdempotencyPolicy`'s, the records `GatewayStore`'s; this moves requests and responses
/// between them. The call's answer — success or error, already in the envelope — is what is
/// kept, so a replay is byte for byte what the first request got.
extension GatewayResponder {
  static let idempotencyKeyHeader = FieldName("Idempotency-Key")!
  static let idempotentReplayedHeader = FieldName("Idempotent-Replayed")!
  /// The headers kept with an answer: those that describe its body or the created resource.
  static let keptHeaders: [FieldName] = [.location, .contentType, .eTag]

  /// The record this request's `Idempotency-Key` names, or nil when the route doesn't take the
  /// header (`IdempotencyPolicy.applies`) or none was sent. A malformed or repeated key is 400;
  /// a key without a caller to own it (no bearer token, no API key) is 401.
  func idempotencyRecord(_ request: Request, route: Route, verifiedUser: String?) throws(APIError) -> IdempotencyRecordID? {
    guard IdempotencyPolicy.applies(to: route) else { return nil }
    let values = request.headers[values: Self.idempotencyKeyHeader]
    guard let value = values.first else { return nil }
    guard values.count == 1 else { throw Self.badKey("send one Idempotency-Key header, not \(values.count)") }
    let key: String
    switch IdempotencyPolicy.parseKey(value) {
    case .success(let parsed): key = parsed
    case .failure(let error): throw Self.badKey(error.message)
    }
    guard let caller = IdempotencyPolicy.caller(verifiedUser: verifiedUser, apiKey: request.headers[Self.apiKeyHeader]) else {
      var error = APIError(
        httpStatus: 401, status: "UNAUTHENTICATED", reason: "IDEMPOTENCY_KEY_NEEDS_CALLER",
        message: "Idempotency-Key needs an authenticated caller (a bearer token or an API key) to keep the answer for",
        details: [.errorInfo(reason: "IDEMPOTENCY_KEY_NEEDS_CALLER", domain: Self.idempotencyDomain, metadata: [:])])
      error.headers["WWW-Authenticate"] = #"Bearer realm="quizwire""#
      throw error
    }
    return IdempotencyRecordID(caller: caller, method: route.verb, path: request.uri.path, key: key)
  }

  /// Runs `answer` at most once for `id`: the first request claims the key, runs and keeps its
  /// answer (when `IdempotencyPolicy.isStorable`); a later one with the same fingerprint gets
  /// that answer again with `Idempotent-Replayed: true` and its own `X-Request-Id` (the body,
  /// `meta.request_id` included, is the first request's); another body is 422; a request
  /// while the first still runs is 409 with `Retry-After`.
  func idempotently(
    _ id: IdempotencyRecordID, fingerprint: String, request: Request, requestID: String, _ answer: () async throws -> Response
  ) async throws -> Response {
    guard let store = self.store else { return try await answer() }
    let claim: IdempotencyClaim
    do {
      claim = try await store.claim(id, fingerprint: fingerprint)
    } catch {
      self.idempotencyMetrics?.record(.storeUnavailable)
      throw Self.storeFailure(error, logger: self.logger, requestID: requestID)
    }
    switch claim {
    case .replay(let stored):
      self.idempotencyMetrics?.record(.replayed)
      var headers: HTTPFields = [Self.requestIDHeader: requestID, Self.idempotentReplayedHeader: "true"]
      for (name, value) in stored.headers.sorted(by: { $0.key < $1.key }) { if let field = FieldName(name) { headers[field] = value } }
      return Response(status: .init(code: stored.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
    case .mismatch:
      self.idempotencyMetrics?.record(.mismatch)
      throw APIError(
        httpStatus: 422, status: "FAILED_PRECONDITION", reason: "IDEMPOTENCY_KEY_MISMATCH",
        message: "this Idempotency-Key was already used with a different request body or query; use a new key for a new request",
        details: [.errorInfo(reason: "IDEMPOTENCY_KEY_MISMATCH", domain: Self.idempotencyDomain, metadata: [:])])
    case .inFlight:
      self.idempotencyMetrics?.record(.inFlight)
      var error = APIError(
        httpStatus: 409, status: "ABORTED", reason: "IDEMPOTENCY_KEY_IN_FLIGHT",
        message: "a request with this Idempotency-Key is still being processed; retry shortly for its answer",
        details: [.errorInfo(reason: "IDEMPOTENCY_KEY_IN_FLIGHT", domain: Self.idempotencyDomain, metadata: [:]), .retryInfo(.seconds(1))])
      error.headers["Retry-After"] = "1"
      throw error
    case .claimed(let token):
      var response: Response
      do {
        response = try await answer()
      } catch {
        response = self.errorResponse(for: error, request: request, requestID: requestID)
      }
      let status = Int(response.status.code)
      do {
        if IdempotencyPolicy.isStorable(status: status) {
          let body = try await Self.collect(response.body)
          response.body = .init(byteBuffer: body)
          var kept: [String: String] = [:]
          for name in Self.keptHeaders { if let value = response.headers[name] { kept[name.canonicalName] = value } }
          try await store.complete(id, token: token, response: StoredResponse(status: status, headers: kept, body: Data(body.readableBytesView)))
          self.idempotencyMetrics?.record(.kept)
        } else {
          try await store.release(id, token: token)
          self.idempotencyMetrics?.record(.notKept)
        }
      } catch {
        self.idempotencyMetrics?.record(.saveFailed)
        // The call happened and its answer goes out; only the record is missing. Its claim
        // stays in flight until the lease ends, then the key is free again.
        self.logger.error(
          "idempotency record not saved", metadata: ["request_id": "\(requestID)", "status": "\(status)", "error": "\(error)"])
      }
      return response
    }
  }

  static let idempotencyDomain = "gateway.quizwire"

  static func badKey(_ message: String) -> APIError {
    var error = APIError.gateway(400, message, violations: [.init(field: "Idempotency-Key", description: message)])
    error.reason = "INVALID_IDEMPOTENCY_KEY"
    error.details.insert(.errorInfo(reason: "INVALID_IDEMPOTENCY_KEY", domain: Self.idempotencyDomain, metadata: [:]), at: 0)
    return error
  }

  /// The gateway's database could not be asked: the call is not made (it could run twice), and
  /// the client retries with the same key.
  static func storeFailure(_ error: any Error, logger: Logger, requestID: String) -> APIError {
    logger.error("idempotency store unavailable", metadata: ["request_id": "\(requestID)", "error": "\(error)"])
    var refusal = APIError.from(RPCError(code: .unavailable, message: "the gateway cannot check Idempotency-Key now; retry with the same key"))
    refusal.headers["Retry-After"] = "1"
    refusal.details.append(.retryInfo(.seconds(1)))
    return refusal
  }

  /// A response body's bytes (the gateway's unary answers are one buffer).
  static func collect(_ body: ResponseBody) async throws -> ByteBuffer {
    let sink = BodySink()
    try await body.write(BodyCollector(sink: sink))
    return sink.buffer.withLock { $0 }
  }
}

/// Where `BodyCollector` leaves the bytes (the writer itself is consumed by `write`).
private final class BodySink: Sendable {
  let buffer = Mutex(ByteBuffer())
}

private struct BodyCollector: ResponseBodyWriter {
  let sink: BodySink
  mutating func write(_ buffer: ByteBuffer) async throws {
    var buffer = buffer
    self.sink.buffer.withLock { $0.writeBuffer(&buffer) }
  }
  consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
