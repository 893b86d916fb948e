import Crypto
import Foundation
import GRPCCore
import JWTKit
import Logging
import NIOConcurrencyHelpers
import XCTest

@testable import ServiceKit

/// Issues tokens the way the auth service does, for the verifier to check.
struct TestIssuer: Sendable {
  let key = ES256PrivateKey()
  let kid: String
  let issuer = "https://auth.quizwire.test"
  let audience = "quizwire"

  init(kid: String = "k1") { self.kid = kid }

  var jwks: String { PublishedJWKSet(keys: [PublishedJWK.es256(self.key.publicKey, kid: self.kid)!]).json() }

  func claims(
    sub: String = "user-1", roles: [String] = ["user"], expiresIn: Int64 = 900, iss: String? = nil, aud: String? = nil,
    clientID: String? = nil, nbf: Int64? = nil, internalService: Bool? = nil
  ) -> AccessTokenClaims {
    let now = Int64(Date().timeIntervalSince1970)
    return AccessTokenClaims(
      sub: sub, iss: iss ?? self.issuer, aud: [aud ?? self.audience], exp: now + expiresIn, iat: now,
      nbf: nbf, jti: UUID().uuidString, clientID: clientID, roles: roles, internalService: internalService)
  }

  func sign(_ claims: AccessTokenClaims, typ: String = "at+jwt", kid: String? = nil) async throws -> String {
    let keys = JWTKeyCollection()
    await keys.add(ecdsa: self.key, kid: JWKIdentifier(string: kid ?? self.kid))
    var header = JWTHeader()
    header.typ = typ
    return try await keys.sign(claims, kid: JWKIdentifier(string: kid ?? self.kid), header: header)
  }

  /// A hand-made token with any header and signature bytes (for the attacks).
  static func forge(header: [String: String], claims: AccessTokenClaims, sign: (Data) -> Data) throws -> String {
    let h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    let p = try JSONEncoder().encode(claims)
    let input = b64url(h) + "." + b64url(p)
    return input + "." + b64url(sign(Data(input.utf8)))
  }

  static func b64url(_ d: Data) -> String {
    d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }
}

final class CountingJWKSSource: JWKSSource {
  let fetches = NIOLockedValueBox(0)
  let json: NIOLockedValueBox<String>
  init(_ json: String) { self.json = NIOLockedValueBox(json) }
  func fetchJWKS() async throws -> String {
    self.fetches.withLockedValue { $0 += 1 }
    return self.json.withLockedValue { $0 }
  }
}

final class TokenVerifierTests: XCTestCase {
  let issuer = TestIssuer()

  func verifier(_ source: any JWKSSource, refresh: Duration = .zero) -> TokenVerifier {
    var config = TokenVerifier.Config(issuer: self.issuer.issuer, audience: self.issuer.audience)
    config.refreshInterval = refresh
    return TokenVerifier(config: config, source: source)
  }

  func failure(_ v: TokenVerifier, _ token: String) async -> AuthFailure? {
    do {
      _ = try await v.verify(token)
      return nil
    } catch {
      return error
    }
  }

  func testValidTokenVerifies() async throws {
    let v = self.verifier(CountingJWKSSource(self.issuer.jwks))
    let claims = try await v.verify(try await self.issuer.sign(self.issuer.claims(roles: ["author"])))
    XCTAssertEqual(claims.sub, "user-1")
    XCTAssertEqual(claims.roles, ["author"])
    XCTAssertTrue(v.hasKeys)
  }

  func testAttacksAndBadClaimsAreRejected() async throws {
    let v = self.verifier(CountingJWKSSource(self.issuer.jwks))
    let good = self.issuer.claims()
    // alg: none
    let none = try TestIssuer.forge(header: ["alg": "none", "typ": "at+jwt", "kid": "k1"], claims: good) { _ in Data() }
    let _v1 = await self.failure(v, none)
    XCTAssertEqual(_v1, .algorithmNotAllowed("none"))
    // HS256 "signed" with the public key (the key-confusion attack)
    let pem = Data(self.issuer.key.publicKey.pemRepresentation.utf8)
    let hs = try TestIssuer.forge(header: ["alg": "HS256", "typ": "at+jwt", "kid": "k1"], claims: good) { input in
      Data(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: pem)))
    }
    let _v2 = await self.failure(v, hs)
    XCTAssertEqual(_v2, .algorithmNotAllowed("HS256"))
    // Right alg, signature from another key with the same kid
    let stranger = TestIssuer(kid: "k1")
    let _v3 = await self.failure(v, try await stranger.sign(good))
    XCTAssertEqual(_v3, .badSignature)
    // typ: an ID token or a plain JWT is not an access token
    let _v4 = await self.failure(v, try await self.issuer.sign(good, typ: "JWT"))
    XCTAssertEqual(_v4, .wrongType("JWT"))
    // expired, wrong issuer, wrong audience, not yet valid
    let _v5 = await self.failure(v, try await self.issuer.sign(self.issuer.claims(expiresIn: -120)))
    XCTAssertEqual(_v5, .expired)
    let _v6 = await self.failure(v, try await self.issuer.sign(self.issuer.claims(iss: "https://evil")))
    XCTAssertEqual(_v6, .wrongIssuer)
    let _v7 = await self.failure(v, try await self.issuer.sign(self.issuer.claims(aud: "other-api")))
    XCTAssertEqual(_v7, .wrongAudience)
    let later = Int64(Date().timeIntervalSince1970) + 600
    let _v8 = await self.failure(v, try await self.issuer.sign(self.issuer.claims(nbf: later)))
    XCTAssertEqual(_v8, .notYetValid)
    // not a token at all
    let _v9 = await self.failure(v, "abc.def")
    XCTAssertEqual(_v9, .malformed("not a JWS compact token"))
  }

  func testUnknownKidRefreshesOnceThenRejects() async throws {
    let source = CountingJWKSSource(self.issuer.jwks)
    let v = self.verifier(source, refresh: .seconds(60))
    _ = try await v.verify(try await self.issuer.sign(self.issuer.claims()))
    XCTAssertEqual(source.fetches.withLockedValue { $0 }, 1)
    // A token from a key the verifier never saw: one refresh, then rejected — no fallback key.
    let rogue = TestIssuer(kid: "rogue")
    let _v10 = await self.failure(v, try await rogue.sign(rogue.claims()))
    XCTAssertEqual(_v10, .unknownKey("rogue"))
    XCTAssertEqual(source.fetches.withLockedValue { $0 }, 1, "refreshes are rate-limited")
  }

  func testRotationPicksUpTheNewKey() async throws {
    let next = TestIssuer(kid: "k2")
    let both = PublishedJWKSet(keys: [PublishedJWK.es256(self.issuer.key.publicKey, kid: "k1")!, PublishedJWK.es256(next.key.publicKey, kid: "k2")!]).json()
    let source = CountingJWKSSource(self.issuer.jwks)
    let v = self.verifier(source)
    _ = try await v.verify(try await self.issuer.sign(self.issuer.claims()))
    source.json.withLockedValue { $0 = both }
    // The new kid triggers a refresh; both old and new tokens verify afterwards.
    _ = try await v.verify(try await next.sign(next.claims()))
    _ = try await v.verify(try await self.issuer.sign(self.issuer.claims()))
    XCTAssertEqual(source.fetches.withLockedValue { $0 }, 2)
  }

  func testAuthInterceptorAppliesPolicies() async throws {
    let v = self.verifier(CountingJWKSSource(self.issuer.jwks))
    let admin = MethodDescriptor(fullyQualifiedService: "test.v1.Probe", method: "Admin")
    let internalMethod = MethodDescriptor(fullyQualifiedService: "test.v1.Probe", method: "Internal")
    let open = MethodDescriptor(fullyQualifiedService: "test.v1.Probe", method: "Open")
    let policies = AccessPolicies([admin: .anyRole(["admin"]), internalMethod: .servicesOnly, open: .public], fallback: .authenticated)
    let apiKeys = FixedAPIKeys(["qw_good": Principal(kind: .apiKey, subject: "key-1", scopes: ["quiz:read"])])
    let auth = AuthInterceptor(policies: policies, verifier: v, apiKeys: apiKeys, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
    let user = try await self.issuer.sign(self.issuer.claims(roles: ["user"]))
    // Client-credentials tokens: the auth service marks its internal clients' ones.
    let service = try await self.issuer.sign(self.issuer.claims(sub: "scoring", roles: [], clientID: "scoring", internalService: true))
    let thirdParty = try await self.issuer.sign(self.issuer.claims(sub: "cl_partner", roles: [], clientID: "cl_partner"))
    let chain: [any ServerInterceptor] = [RequestIDInterceptor(), auth]
    func code(_ method: MethodDescriptor, _ metadata: Metadata) async -> RPCError.Code? {
      await Harness.run(chain, metadata: metadata, messages: ["a"], method: method, handler: Harness.unary { (m: String) in m }).error?.code
    }
    let _v11 = await code(Harness.method, ["authorization": "Bearer \(user)"])
    XCTAssertNil(_v11)
    let _v12 = await code(Harness.method, [:])
    XCTAssertEqual(_v12, .unauthenticated)
    let _v13 = await code(Harness.method, ["authorization": "Basic abc"])
    XCTAssertEqual(_v13, .unauthenticated)
    let _v14 = await code(admin, ["authorization": "Bearer \(user)"])
    XCTAssertEqual(_v14, .permissionDenied)
    let _v15 = await code(internalMethod, ["authorization": "Bearer \(user)"])
    XCTAssertEqual(_v15, .permissionDenied)
    let _v16 = await code(internalMethod, ["authorization": "Bearer \(service)"])
    XCTAssertNil(_v16)
    let thirdPartyInternal = await code(internalMethod, ["authorization": "Bearer \(thirdParty)"])
    XCTAssertEqual(thirdPartyInternal, .permissionDenied, "a registered client is not one of our services")
    let thirdPartyAuthenticated = await code(Harness.method, ["authorization": "Bearer \(thirdParty)"])
    XCTAssertNil(thirdPartyAuthenticated, "but it is authenticated")
    let _v17 = await code(open, [:])
    XCTAssertNil(_v17)
    let _v18 = await code(open, ["authorization": "Bearer not-a-token"])
    XCTAssertEqual(_v18, .unauthenticated, "a bad credential is refused even on public methods")
    let _v19 = await code(Harness.method, ["x-api-key": "qw_good"])
    XCTAssertNil(_v19)
    let _v20 = await code(Harness.method, ["x-api-key": "qw_bad"])
    XCTAssertEqual(_v20, .unauthenticated)
  }

  func testPrincipalKindsFromClaims() {
    let user = self.issuer.claims(sub: "u-1")
    let delegated = self.issuer.claims(sub: "u-1", clientID: "cl_app")
    let client = self.issuer.claims(sub: "cl_app", clientID: "cl_app")
    let service = self.issuer.claims(sub: "quiz", clientID: "quiz", internalService: true)
    // The mark only counts on a client-credentials token (subject = client).
    let markedUser = self.issuer.claims(sub: "u-1", clientID: "cl_app", internalService: true)
    XCTAssertEqual([user, delegated, client, service, markedUser].map(AuthInterceptor.kind(of:)), [.user, .user, .client, .service, .user])
  }

  func testJWKSReadinessFollowsTheSource() async throws {
    let source = CountingJWKSSource("{\"keys\":[]}")
    let v = self.verifier(source)
    let check = v.readinessCheck
    let failing = await Readiness.run([check], timeout: .seconds(5))
    XCTAssertNotNil(failing["jwks"], "no usable key: not ready")
    source.json.withLockedValue { $0 = self.issuer.jwks }
    let passing = await Readiness.run([check], timeout: .seconds(5))
    XCTAssertEqual(passing, [:])
  }

  func testAPIKeyCacheKeepsNoPlainKey() async throws {
    let base = FixedAPIKeys(["qw_secret": Principal(kind: .apiKey, subject: "k")])
    let cached = CachedAPIKeyChecker(base, ttl: .seconds(60))
    _ = try await cached.principal(forAPIKey: "qw_secret")
    _ = try await cached.principal(forAPIKey: "qw_secret")
    _ = try await cached.principal(forAPIKey: "qw_other")
    XCTAssertEqual(base.lookups.withLockedValue { $0 }, 2)
    let keys = cached.cache.withLockedValue { Array($0.keys) }
    XCTAssertEqual(keys.count, 2)
    XCTAssertFalse(keys.contains { $0.contains("qw_") }, "the cache holds digests, not keys")
    XCTAssertTrue(keys.contains(Digests.sha256Hex("qw_secret")))
  }
}

final class FixedAPIKeys: APIKeyChecker {
  let keys: [String: Principal]
  let lookups = NIOLockedValueBox(0)
  init(_ keys: [String: Principal]) { self.keys = keys }
  func principal(forAPIKey key: String) async throws -> Principal? {
    self.lookups.withLockedValue { $0 += 1 }
    return self.keys[key]
  }
}
