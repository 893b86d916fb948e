import GRPCCore
import Hummingbird
import NIOCore
import ServiceKit

/// Hummingbird's basic context plus the peer's address, which the rate limits key anonymous
/// callers by and the services receive as `x-forwarded-for`.
struct GatewayRequestContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  /// The TCP peer. An incoming `X-Forwarded-For` is not trusted: the gateway is the edge, and
  /// a client could otherwise name any address to get a fresh bucket.
  let remoteAddress: SocketAddress?

  init(source: ApplicationRequestContextSource) {
    self.coreContext = .init(source: source)
    self.remoteAddress = source.channel.remoteAddress
  }

  /// "127.0.0.1", "::1": the address without its port (one bucket per host, not connection).
  var clientAddress: String? { self.remoteAddress?.ipAddress }
}

/// What the gateway learned about the caller before routing: the quota the request was
/// charged to (for the response's headers) and the address to forward.
struct Admission: Sendable {
  var decision: RateLimitDecision?
  var clientAddress: String?
  /// The bearer token's `sub`, once verified: whose idempotency records the request reads.
  var verifiedUser: String?
  /// The request named its bucket with an API key (a refusal of it is charged to the address).
  var presentedAPIKey = false

  static let none = Admission()
}

extension GatewayResponder {
  /// Verifies a bearer token (an invalid one is 401 here, before any RPC), picks the bucket
  /// — API key, else verified user, else client address — and charges one request to it; a
  /// refusal is thrown as 429 with the quota headers.
  func admit(_ request: Request, context: Context) async throws(APIError) -> Admission {
    var admission = Admission(clientAddress: context.clientAddress)
    var partition = RateLimitPartition.address(admission.clientAddress ?? "unknown")
    if let token = Self.bearerToken(request.headers[.authorization]) {
      let claims: AccessTokenClaims
      do {
        claims = try await self.verifier.verify(token)
      } catch {
        throw Self.tokenRefusal(error)
      }
      partition = .user(claims.sub)
      admission.verifiedUser = claims.sub
    }
    // The key itself is checked by the services; here it only names the bucket, so a client
    // with many keys has many buckets, as the keys' owner asked for.
    if let key = request.headers[Self.apiKeyHeader], !key.isEmpty {
      partition = .apiKey(key)
      admission.presentedAPIKey = true
    }
    guard let limiter = self.rateLimiter else { return admission }
    if admission.presentedAPIKey, let address = admission.clientAddress {
      let refusals = limiter.keyRefusalsAllow(address)
      guard refusals.allowed else {
        throw Self.rateLimited(refusals, message: "too many refused API keys from this client address; retry after \(refusals.reset) s")
      }
    }
    let decision = limiter.take(partition)
    admission.decision = decision
    guard decision.allowed else {
      throw Self.rateLimited(
        decision, message: "rate limit exceeded for this \(decision.policy == "ip" ? "client address" : decision.policy); retry after \(decision.reset) s")
    }
    return admission
  }

  /// 429 in the envelope with the quota headers.
  static func rateLimited(_ decision: RateLimitDecision, message: String) -> APIError {
    var error = APIError(
      httpStatus: 429, status: "RESOURCE_EXHAUSTED", reason: "RATE_LIMITED", message: message,
      details: [
        .errorInfo(reason: "RATE_LIMITED", domain: "gateway.quizwire", metadata: ["policy": decision.policy]),
        .retryInfo(.seconds(decision.reset)),
      ])
    for (name, value) in decision.headers { error.headers[name] = value }
    return error
  }

  /// The quota headers on a response that was let through.
  static func addQuotaHeaders(_ admission: Admission, to response: inout Response) {
    guard let decision = admission.decision, decision.allowed else { return }
    for (name, value) in decision.headers { if let field = FieldName(name) { response.headers[field] = value } }
  }

  /// `Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1); nil for other schemes, which
  /// the services judge.
  static func bearerToken(_ authorization: String?) -> String? {
    guard let authorization, authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else { return nil }
    let token = authorization.dropFirst(7).trimmingCharacters(in: .whitespaces)
    return token.isEmpty ? nil : token
  }

  /// A token that fails verification is 401 with the RFC 6750 challenge; when the auth
  /// service's keys can't be fetched the token may well be valid, so that is 503 instead.
  static func tokenRefusal(_ failure: AuthFailure) -> APIError {
    if case .keysUnavailable = failure {
      return .from(RPCError(code: .unavailable, message: "cannot verify the bearer token now: the auth service's keys are unavailable"))
    }
    var error = APIError.from(RPCError(code: .unauthenticated, message: "the bearer token is not valid: \(failure)"))
    error.headers["WWW-Authenticate"] = #"Bearer realm="quizwire", error="invalid_token""#
    return error
  }
}
