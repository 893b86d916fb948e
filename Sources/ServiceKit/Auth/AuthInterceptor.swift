import Foundation
import GRPCCore
import Logging
import NIOConcurrencyHelpers
import ServiceContextModule

/// Checks an API key (the auth service does, behind this protocol).
public protocol APIKeyChecker: Sendable {
  /// The key's principal, nil when the key is unknown, revoked or expired.
  func principal(forAPIKey key: String) async throws -> Principal?
}

/// Caches API key answers briefly (positive and negative), keyed by the key's SHA-256 so
/// the cache never holds a usable credential.
public final class CachedAPIKeyChecker: APIKeyChecker {
  private let base: any APIKeyChecker
  private let ttl: Duration
  private let maxEntries: Int
  /// Keyed by the SHA-256 of the key (internal for tests).
  let cache = NIOLockedValueBox<[String: (Principal?, ContinuousClock.Instant)]>([:])

  public init(_ base: any APIKeyChecker, ttl: Duration = .seconds(30), maxEntries: Int = 10_000) {
    self.base = base
    self.ttl = ttl
    self.maxEntries = maxEntries
  }

  public func principal(forAPIKey key: String) async throws -> Principal? {
    let digest = Digests.sha256Hex(key)
    let now = ContinuousClock.now
    if let (principal, expires) = self.cache.withLockedValue({ $0[digest] }), expires > now { return principal }
    let principal = try await self.base.principal(forAPIKey: key)
    self.cache.withLockedValue { cache in
      if cache.count >= self.maxEntries { cache.removeAll(keepingCapacity: true) }
      cache[digest] = (principal, now + self.ttl)
    }
    return principal
  }
}

/// Authenticates the caller (`authorization: Bearer <JWT>` or `x-api-key`) and applies the
/// method's `AccessPolicy`. A presented credential that fails is UNAUTHENTICATED even on a
/// public method: a client with a broken token should hear about it.
public struct AuthInterceptor: ServerInterceptor {
  public let policies: AccessPolicies
  public let verifier: TokenVerifier?
  public let apiKeys: (any APIKeyChecker)?
  private let logger: Logger

  public init(policies: AccessPolicies, verifier: TokenVerifier?, apiKeys: (any APIKeyChecker)?, logger: Logger) {
    self.policies = policies
    self.verifier = verifier
    self.apiKeys = apiKeys
    self.logger = logger
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let principal = try await self.authenticate(request.metadata, method: context.descriptor)
    if let principal { ServiceContext.current?.call?.principal = principal }
    if let denied = AccessPolicies.decide(self.policies.policy(for: context.descriptor), principal: principal) {
      throw denied
    }
    return try await next(request, context)
  }

  /// The caller, nil when no credential was presented.
  public func authenticate(_ metadata: Metadata, method: MethodDescriptor) async throws(RPCError) -> Principal? {
    let authorization = metadata.first("authorization")
    let apiKey = metadata.first("x-api-key")
    do {
      if let authorization {
        guard let token = Self.bearerToken(authorization) else { throw AuthFailure.malformed("authorization is not \"Bearer <token>\"") }
        // A host that verifies no tokens refuses them as a credential problem, not as an
        // outage (UNAVAILABLE would be retried and trip the caller's circuit breakers).
        guard let verifier = self.verifier else { throw AuthFailure.malformed("this service accepts no bearer tokens") }
        let claims = try await verifier.verify(token)
        let kind = Self.kind(of: claims)
        let scopes = Set((claims.scope ?? "").split(separator: " ").map(String.init))
        return Principal(
          kind: kind, subject: claims.sub, roles: Set(claims.roles ?? []), scopes: scopes,
          delegatedClient: kind == .user ? claims.clientID : nil)
      }
      if let apiKey {
        guard let checker = self.apiKeys else { throw AuthFailure.invalidAPIKey }
        let principal: Principal?
        do {
          principal = try await checker.principal(forAPIKey: apiKey)
        } catch {
          throw AuthFailure.keysUnavailable("API key check failed: \(error)")
        }
        guard let principal else { throw AuthFailure.invalidAPIKey }
        return principal
      }
      return nil
    } catch let failure as AuthFailure {
      // The precise reason is for operators; the caller gets the coarse one.
      self.logger.notice(
        "credential refused",
        metadata: [
          "method": .string(method.fullyQualifiedMethod), "reason": .string(failure.description),
          "request_id": .string(ServiceContext.current?.call?.requestID ?? "-"),
        ])
      throw failure.rpcError
    } catch {
      throw RPCError(code: .unauthenticated, message: "invalid credentials")
    }
  }

  /// A token whose subject is its own client is a client-credentials token: a service
  /// principal only when the auth service marked the client internal, else a plain client
  /// (so a registered third-party client can't call service-only methods).
  static func kind(of claims: AccessTokenClaims) -> Principal.Kind {
    guard let clientID = claims.clientID, clientID == claims.sub else { return .user }
    return claims.internalService == true ? .service : .client
  }

  static func bearerToken(_ value: String) -> String? {
    let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    let token = parts[1].trimmingCharacters(in: .whitespaces)
    return token.isEmpty ? nil : token
  }
}
