import Foundation
import JWTKit
import NIOConcurrencyHelpers

/// The claims of a Quizwire access token (RFC 9068 profile).
public struct AccessTokenClaims: JWTPayload, Sendable, Equatable {
  public var sub: String
  public var iss: String
  public var aud: AudienceClaim
  public var exp: Int64
  public var iat: Int64
  public var nbf: Int64?
  public var jti: String
  public var clientID: String?
  public var roles: [String]?
  public var scope: String?
  /// `"internal": true` on client-credentials tokens of the suite's own services; absent on
  /// every other token. Only these become service principals.
  public var internalService: Bool?

  enum CodingKeys: String, CodingKey {
    case sub, iss, aud, exp, iat, nbf, jti, roles, scope
    case clientID = "client_id"
    case internalService = "internal"
  }

  public init(
    sub: String, iss: String, aud: [String], exp: Int64, iat: Int64, nbf: Int64? = nil, jti: String,
    clientID: String? = nil, roles: [String]? = nil, scope: String? = nil, internalService: Bool? = nil
  ) {
    self.sub = sub
    self.iss = iss
    self.aud = AudienceClaim(value: aud)
    self.exp = exp
    self.iat = iat
    self.nbf = nbf
    self.jti = jti
    self.clientID = clientID
    self.roles = roles
    self.scope = scope
    self.internalService = internalService
  }

  /// Claims are checked by `TokenVerifier` with its own clock and rules, not here.
  public func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// Header-only view for reading `kid`, `alg`, `typ` before choosing a key.
private struct IgnoredClaims: JWTPayload {
  func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// Verifies access tokens against a JWK Set, with every rule ours rather than jwt-kit's
/// defaults: `typ` must be `at+jwt`, `alg` must be allowed *and* match the key's, the `kid` must
/// be one we hold (an unknown one triggers one JWKS refresh, then rejection — never a fallback
/// key), and `iss`, `aud`, `exp`, `nbf` are checked with a small leeway.
public final class TokenVerifier: Sendable {
  public struct Config: Sendable {
    public var issuer: String
    public var audience: String
    public var allowedAlgorithms: Set<String> = ["ES256"]
    public var leeway: Duration = .seconds(30)
    /// Minimum time between JWKS fetches caused by unknown `kid`s (a flood of forged kids
    /// must not become a flood of fetches).
    public var refreshInterval: Duration = .seconds(10)
    public init(issuer: String, audience: String) {
      self.issuer = issuer
      self.audience = audience
    }
  }

  private struct Key: Sendable {
    var alg: String
    var collection: JWTKeyCollection
  }

  private struct State: Sendable {
    var keys: [String: Key] = [:]
    var lastFetch: ContinuousClock.Instant?
    var lastError: String?
  }

  public let config: Config
  private let source: any JWKSSource
  private let state = NIOLockedValueBox(State())
  private let now: @Sendable () -> Date

  public init(config: Config, source: any JWKSSource, now: @escaping @Sendable () -> Date = Date.init) {
    self.config = config
    self.source = source
    self.now = now
  }

  /// Whether keys have been loaded (readiness of anything that verifies tokens).
  public var hasKeys: Bool { self.state.withLockedValue { !$0.keys.isEmpty } }
  public var lastError: String? { self.state.withLockedValue { $0.lastError } }

  /// Fetches the JWK Set now, replacing the keys held.
  public func refresh() async throws {
    self.state.withLockedValue { $0.lastFetch = .now }
    let json: String
    do {
      json = try await self.source.fetchJWKS()
    } catch {
      self.state.withLockedValue { $0.lastError = "\(error)" }
      throw AuthFailure.keysUnavailable("\(error)")
    }
    let set = try PublishedJWKSet.parse(json)
    var keys: [String: Key] = [:]
    for jwk in set.keys {
      // Only signing keys we know how to check; anything else is skipped, not guessed at.
      guard let kid = jwk.kid, jwk.use == nil || jwk.use == "sig",
        jwk.kty == "EC", jwk.crv == "P-256", jwk.alg == "ES256",
        let x = jwk.x, let y = jwk.y,
        let key = try? ES256PublicKey(parameters: (x: x, y: y))
      else { continue }
      let collection = JWTKeyCollection()
      await collection.add(ecdsa: key, kid: JWKIdentifier(string: kid))
      keys[kid] = Key(alg: "ES256", collection: collection)
    }
    self.state.withLockedValue {
      $0.keys = keys
      $0.lastError = nil
    }
  }

  /// Verifies `token` and returns its claims, or throws `AuthFailure`.
  public func verify(_ token: String) async throws(AuthFailure) -> AccessTokenClaims {
    let header: JWTHeader
    do {
      header = try DefaultJWTParser().parse(Array(token.utf8), as: IgnoredClaims.self).header
    } catch {
      throw .malformed("not a JWS compact token")
    }
    guard let typ = header.typ, ["at+jwt", "application/at+jwt"].contains(typ.lowercased()) else {
      throw .wrongType(header.typ)
    }
    guard let alg = header.alg, self.config.allowedAlgorithms.contains(alg) else {
      throw .algorithmNotAllowed(header.alg)
    }
    guard let kid = header.kid, !kid.isEmpty else { throw .unknownKey(nil) }
    let key = try await self.key(for: kid)
    guard key.alg == alg else { throw .algorithmNotAllowed(alg) }
    let claims: AccessTokenClaims
    do {
      claims = try await key.collection.verify(token, as: AccessTokenClaims.self)
    } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
      throw .badSignature
    } catch {
      throw .malformed("claims do not decode or signature invalid")
    }
    try self.check(claims)
    return claims
  }

  func check(_ claims: AccessTokenClaims) throws(AuthFailure) {
    let now = self.now().timeIntervalSince1970
    let leeway = Double(self.config.leeway.components.seconds)
    guard claims.iss == self.config.issuer else { throw .wrongIssuer }
    guard claims.aud.value.contains(self.config.audience) else { throw .wrongAudience }
    guard Double(claims.exp) + leeway > now else { throw .expired }
    if let nbf = claims.nbf, Double(nbf) - leeway > now { throw .notYetValid }
    guard Double(claims.iat) - leeway <= now else { throw .notYetValid }
  }

  private func key(for kid: String) async throws(AuthFailure) -> Key {
    if let key = self.state.withLockedValue({ $0.keys[kid] }) { return key }
    // Unknown kid: the signer may have rotated. Refresh once (rate-limited), then decide.
    let mayFetch = self.state.withLockedValue { state in
      guard let last = state.lastFetch else { return true }
      return ContinuousClock.now - last >= self.config.refreshInterval
    }
    if mayFetch {
      do { try await self.refresh() } catch { throw .keysUnavailable("\(error)") }
    }
    guard let key = self.state.withLockedValue({ $0.keys[kid] }) else { throw .unknownKey(kid) }
    return key
  }
}

extension TokenVerifier {
  /// Readiness of a service that verifies tokens: it has the auth service's keys (fetching
  /// them if it has none yet).
  public var readinessCheck: DependencyCheck {
    DependencyCheck(name: "jwks") {
      if !self.hasKeys { try await self.refresh() }
      guard self.hasKeys else { throw AuthFailure.keysUnavailable("the JWK Set has no usable ES256 signing key") }
    }
  }
}
