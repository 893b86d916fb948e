@testable import AuthService
import Foundation
import GRPCCore
import GRPCProtobuf
import QuizwireProtos
import ServiceKit
import TestSupport
import XCTest

final class AuthKeysAndOAuthTests: XCTestCase {
  var fx: AuthFixture!

  override func setUp() async throws { self.fx = try await AuthFixture.start() }
  override func tearDown() async throws { await self.fx.stop() }

  func testAPIKeysCreateUseListRevokeRotate() async throws {
    try await fx.register("kim@example.com")
    let token = try await fx.login("kim@example.com").accessToken
    let created = try await fx.auth.createAPIKey(
      .with {
        $0.name = "ci"; $0.scopes = ["quiz:read"]; $0.rateLimitPerSecond = 5
      },
      metadata: AuthFixture.bearer(token))
    XCTAssertTrue(created.key.hasPrefix("qw_" + created.apiKey.id + "_"))
    XCTAssertEqual(created.apiKey.prefix, "qw_" + created.apiKey.id)
    // The key authenticates on its own.
    let me = try await fx.auth.getMe(.init(), metadata: ["x-api-key": .string(created.key)])
    XCTAssertEqual(me.email, "kim@example.com")
    // Listing shows the prefix, never the secret.
    let listed = try await fx.auth.listAPIKeys(.init(), metadata: AuthFixture.bearer(token))
    XCTAssertEqual(listed.apiKeys.map(\.id), [created.apiKey.id])
    XCTAssertFalse(try listed.jsonString().contains(String(created.key.split(separator: "_", maxSplits: 2)[2])))
    // Rotation: the new key works at once, the old one through the overlap only.
    let rotated = try await fx.auth.rotateAPIKey(
      .with {
        $0.id = created.apiKey.id; $0.overlapSeconds = 1
      }, metadata: AuthFixture.bearer(token))
    _ = try await fx.auth.getMe(.init(), metadata: ["x-api-key": .string(rotated.key)])
    _ = try await fx.auth.getMe(.init(), metadata: ["x-api-key": .string(created.key)])
    XCTAssertEqual(rotated.apiKey.scopes, ["quiz:read"])
    // Revoke the new one; a wrong secret with a real id fails too.
    _ = try await fx.auth.revokeAPIKey(.with { $0.id = rotated.apiKey.id }, metadata: AuthFixture.bearer(token))
    let forged = "qw_" + rotated.apiKey.id + "_" + RandomTokens.random()
    for key in [forged, "qw_nope", "' OR 1=1 --"] {
      let code = await statusCode { _ = try await self.fx.auth.getMe(.init(), metadata: ["x-api-key": .string(key)]) }
      XCTAssertEqual(code, .unauthenticated, key)
    }
    // Someone else can't revoke my key.
    try await fx.register("lee@example.com")
    let other = try await fx.login("lee@example.com").accessToken
    let theirs = await statusCode { _ = try await self.fx.auth.revokeAPIKey(.with { $0.id = created.apiKey.id }, metadata: AuthFixture.bearer(other)) }
    XCTAssertEqual(theirs, .notFound)
    let bad = await rpcError {
      _ = try await self.fx.auth.createAPIKey(
        .with {
          $0.name = ""; $0.scopes = ["BAD SCOPE"]
        }, metadata: AuthFixture.bearer(token))
    }
    XCTAssertEqual(bad?.code, .invalidArgument)
    // After the overlap the old key stops working (the cache holds answers 30 s, so ask the service).
    try await Task.sleep(for: .milliseconds(1100))
    let service = try await self.serviceToken()
    let check = try await fx.auth.checkAPIKey(.with { $0.key = created.key }, metadata: AuthFixture.bearer(service))
    XCTAssertFalse(check.valid)
    let revokedCheck = try await fx.auth.checkAPIKey(.with { $0.key = rotated.key }, metadata: AuthFixture.bearer(service))
    XCTAssertFalse(revokedCheck.valid, "a revoked key is refused")
    // Keys act within their scopes, not with their owner's roles; rotating never extends a key.
    let admin = try await fx.adminToken()
    let adminKey = try await fx.auth.createAPIKey(
      .with {
        $0.name = "ops"; $0.scopes = ["quiz:read"]; $0.ttlSeconds = 3600
      }, metadata: AuthFixture.bearer(admin))
    let asKey = await statusCode { _ = try await self.fx.auth.listUsers(.init(), metadata: ["x-api-key": .string(adminKey.key)]) }
    XCTAssertEqual(asKey, .permissionDenied)
    let successor = try await fx.auth.rotateAPIKey(.with { $0.id = adminKey.apiKey.id }, metadata: AuthFixture.bearer(admin))
    XCTAssertEqual(successor.apiKey.expiresAtUnix, adminKey.apiKey.expiresAtUnix)
    let byKey = await statusCode {
      _ = try await self.fx.auth.rotateAPIKey(.with { $0.id = successor.apiKey.id }, metadata: ["x-api-key": .string(successor.key)])
    }
    XCTAssertEqual(byKey, .permissionDenied, "a key can't mint its own successor")
    let huge = await statusCode {
      _ = try await self.fx.auth.createAPIKey(
        .with {
          $0.name = "x"; $0.ttlSeconds = .max
        }, metadata: AuthFixture.bearer(token))
    }
    XCTAssertEqual(huge, .invalidArgument, "an absurd ttl is refused, not an overflow")
  }

  /// An internal (service) client with client_credentials; returns its token.
  func serviceToken(scopes: [String] = ["quiz:read"]) async throws -> String {
    let admin = try await fx.adminToken()
    let client = try await fx.auth.registerClient(
      .with {
        $0.name = "scoring"; $0.grantTypes = ["client_credentials"]; $0.scopes = scopes; $0.confidential = true; $0.internalService = true
      }, metadata: AuthFixture.bearer(admin))
    return try await fx.auth.clientCredentials(
      .with {
        $0.clientID = client.clientID; $0.clientSecret = client.clientSecret
      }
    ).accessToken
  }

  func testClientCredentialsAndServiceOnlyMethods() async throws {
    let admin = try await fx.adminToken()
    let client = try await fx.auth.registerClient(
      .with {
        $0.name = "scoring"; $0.grantTypes = ["client_credentials"]; $0.scopes = ["quiz:read", "quiz:write"]; $0.confidential = true
        $0.internalService = true
      }, metadata: AuthFixture.bearer(admin))
    XCTAssertTrue(client.clientSecret.hasPrefix("cs_"))
    let token = try await fx.auth.clientCredentials(
      .with {
        $0.clientID = client.clientID; $0.clientSecret = client.clientSecret; $0.scope = "quiz:read"
      })
    XCTAssertEqual(token.scope, "quiz:read")
    XCTAssertTrue(token.refreshToken.isEmpty, "no refresh token for client credentials")
    let wrongSecret = await rpcError {
      _ = try await self.fx.auth.clientCredentials(
        .with {
          $0.clientID = client.clientID; $0.clientSecret = "cs_wrong"
        })
    }
    XCTAssertEqual(wrongSecret?.code, .unauthenticated)
    XCTAssertEqual(try wrongSecret?.unpackGoogleRPCStatus()?.details.first?.errorInfo?.reason, "invalid_client")
    let tooMuch = await rpcError {
      _ = try await self.fx.auth.clientCredentials(
        .with {
          $0.clientID = client.clientID; $0.clientSecret = client.clientSecret; $0.scope = "admin"
        })
    }
    XCTAssertEqual(try tooMuch?.unpackGoogleRPCStatus()?.details.first?.errorInfo?.reason, "invalid_scope")

    // Service-only methods: the service token may, a user token may not.
    let introspected = try await fx.auth.introspectToken(.with { $0.token = token.accessToken }, metadata: AuthFixture.bearer(token.accessToken))
    XCTAssertTrue(introspected.active)
    XCTAssertEqual(introspected.clientID, client.clientID)
    XCTAssertEqual(introspected.sub, client.clientID)
    let garbage = try await fx.auth.introspectToken(.with { $0.token = "garbage" }, metadata: AuthFixture.bearer(token.accessToken))
    XCTAssertFalse(garbage.active)
    try await fx.register("mo@example.com")
    let user = try await fx.login("mo@example.com")
    let denied = await statusCode { _ = try await self.fx.auth.introspectToken(.with { $0.token = "x" }, metadata: AuthFixture.bearer(user.accessToken)) }
    XCTAssertEqual(denied, .permissionDenied)
    // Revocation through the service API ends the user's refresh family.
    _ = try await fx.auth.revokeToken(.with { $0.token = user.refreshToken }, metadata: AuthFixture.bearer(token.accessToken))
    let revoked = try await fx.auth.introspectToken(.with { $0.token = user.refreshToken }, metadata: AuthFixture.bearer(token.accessToken))
    XCTAssertFalse(revoked.active)
    // Registering clients is for admins only, and needs sane redirect URIs.
    let _v1 = await statusCode {
      _ = try await self.fx.auth.registerClient(
        .with {
          $0.name = "x"; $0.grantTypes = ["client_credentials"]; $0.confidential = true
        }, metadata: AuthFixture.bearer(user.accessToken))
    }
    XCTAssertEqual(_v1, .permissionDenied)
    let _v2 = await statusCode {
      _ = try await self.fx.auth.registerClient(
        .with {
          $0.name = "x"; $0.grantTypes = ["authorization_code"]; $0.redirectUris = ["http://evil.example/cb"]
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(_v2, .invalidArgument)
  }

  func testAuthorizationCodeWithPKCE() async throws {
    let admin = try await fx.adminToken()
    let redirect = "https://app.quizwire.test/callback"
    let client = try await fx.auth.registerClient(
      .with {
        $0.name = "web"; $0.grantTypes = ["authorization_code", "refresh_token"]; $0.redirectUris = [redirect]; $0.scopes = ["quiz:read"]
      }, metadata: AuthFixture.bearer(admin))
    XCTAssertTrue(client.clientSecret.isEmpty, "public client: PKCE only")
    try await fx.register("nia@example.com")
    let user = try await fx.login("nia@example.com").accessToken
    let verifier = RandomTokens.random(bytes: 48)
    let challenge = PKCE.challenge(for: verifier)
    func authorize(_ uri: String = redirect, method: String = "S256", challenge c: String = challenge) async throws -> String {
      try await fx.auth.authorize(
        .with {
          $0.clientID = client.clientID; $0.redirectUri = uri; $0.codeChallenge = c; $0.codeChallengeMethod = method
        }, metadata: AuthFixture.bearer(user)
      ).code
    }
    func exchange(_ code: String, verifier v: String = verifier, uri: String = redirect) async throws -> Auth_V1_TokenResponse {
      try await fx.auth.exchangeCode(
        .with {
          $0.clientID = client.clientID; $0.code = code; $0.redirectUri = uri; $0.codeVerifier = v
        })
    }
    func reason(_ body: () async throws -> Void) async -> String? {
      try? await rpcError(body)?.unpackGoogleRPCStatus()?.details.first?.errorInfo?.reason
    }
    // Only S256, only registered redirect URIs (exact: one character off is refused).
    let _v3 = await reason { _ = try await authorize(method: "plain", challenge: verifier) }
    XCTAssertEqual(_v3, "invalid_request")
    let _v4 = await reason { _ = try await authorize(redirect + "/") }
    XCTAssertEqual(_v4, "invalid_request")
    let _v5 = await reason { _ = try await authorize("https://app.quizwire.test/callbacK") }
    XCTAssertEqual(_v5, "invalid_request")
    let code = try await authorize()
    // Wrong verifier, wrong redirect: refused.
    let _v6 = await reason { _ = try await exchange(code, verifier: RandomTokens.random(bytes: 48)) }
    XCTAssertEqual(_v6, "invalid_grant")
    let _v7 = await reason { _ = try await exchange(code, uri: redirect + "x") }
    XCTAssertEqual(_v7, "invalid_grant")
    let tokens = try await exchange(code)
    XCTAssertEqual(tokens.scope, "quiz:read")
    // The client acts within its scope: the token carries none of the user's roles, and it
    // can't manage the user's account.
    let payload = try JSONSerialization.jsonObject(with: AuthFlowTests.unb64(String(tokens.accessToken.split(separator: ".")[1]))) as? [String: Any]
    XCTAssertEqual(payload?["roles"] as? [String], [])
    XCTAssertEqual(payload?["client_id"] as? String, client.clientID)
    let delegatedKey = await statusCode { _ = try await self.fx.auth.createAPIKey(.with { $0.name = "x" }, metadata: AuthFixture.bearer(tokens.accessToken)) }
    XCTAssertEqual(delegatedKey, .permissionDenied)
    let introspection = try await fx.auth.getMe(.init(), metadata: AuthFixture.bearer(tokens.accessToken))
    XCTAssertEqual(introspection.email, "nia@example.com")
    // The code is single-use; a replay also revokes what the first exchange issued.
    let _v8 = await reason { _ = try await exchange(code) }
    XCTAssertEqual(_v8, "invalid_grant")
    let _v9 = await statusCode { _ = try await self.fx.auth.refresh(.with { $0.refreshToken = tokens.refreshToken }) }
    XCTAssertEqual(_v9, .unauthenticated)
    XCTAssertTrue(fx.log.entries().contains { $0["event"] as? String == "auth_code_replay" })
  }

  func testSQLLookingInputInEveryStringField() async throws {
    let sql = "x'); DROP TABLE users; --"
    let admin = try await fx.adminToken()
    let weird = try await fx.register("o'brien@example.com", name: "Robert'); DROP TABLE users;--")
    XCTAssertEqual(weird.displayName, "Robert'); DROP TABLE users;--")
    let _v10 = await statusCode { try await self.fx.register("' OR '1'='1", sql) }
    XCTAssertEqual(_v10, .invalidArgument)
    let _v11 = await statusCode { _ = try await self.fx.login("' OR 1=1 --", sql) }
    XCTAssertEqual(_v11, .unauthenticated)
    let _v12 = await statusCode { _ = try await self.fx.login("o'brien@example.com", "' OR '1'='1' --") }
    XCTAssertEqual(_v12, .unauthenticated)
    let _v13 = await statusCode { _ = try await self.fx.auth.refresh(.with { $0.refreshToken = "rt_' OR '1'='1" }) }
    XCTAssertEqual(_v13, .unauthenticated)
    _ = try await fx.auth.logout(.with { $0.refreshToken = sql })
    let _v14 = await statusCode {
      _ = try await self.fx.auth.clientCredentials(
        .with {
          $0.clientID = "cl_'; DROP TABLE oauth_clients;--"; $0.clientSecret = sql; $0.scope = sql
        })
    }
    XCTAssertEqual(_v14, .unauthenticated)
    let _v15 = await statusCode {
      _ = try await self.fx.auth.exchangeCode(
        .with {
          $0.clientID = sql; $0.code = "ac_' OR 1=1"; $0.redirectUri = sql; $0.codeVerifier = sql
        })
    }
    XCTAssertEqual(_v15, .unauthenticated)
    let _v16 = await statusCode {
      _ = try await self.fx.auth.setRoles(
        .with {
          $0.userID = sql; $0.roles = ["user"]
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(_v16, .notFound)
    let _v17 = await statusCode {
      _ = try await self.fx.auth.setRoles(
        .with {
          $0.userID = weird.id; $0.roles = [sql]
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(_v17, .invalidArgument)
    let user = try await fx.login("o'brien@example.com").accessToken
    let _v18 = await statusCode {
      _ = try await self.fx.auth.createAPIKey(
        .with {
          $0.name = sql; $0.scopes = [sql]
        }, metadata: AuthFixture.bearer(user))
    }
    XCTAssertEqual(_v18, .invalidArgument)
    let _v19 = await statusCode { _ = try await self.fx.auth.createAPIKey(.with { $0.name = sql }, metadata: AuthFixture.bearer(user)) }
    XCTAssertNil(_v19, "names are data")
    let _v20 = await statusCode { _ = try await self.fx.auth.revokeAPIKey(.with { $0.id = sql }, metadata: AuthFixture.bearer(user)) }
    XCTAssertEqual(_v20, .notFound)
    let _v21 = await statusCode { _ = try await self.fx.auth.rotateAPIKey(.with { $0.id = sql }, metadata: AuthFixture.bearer(user)) }
    XCTAssertEqual(_v21, .notFound)
    let _v22 = await statusCode {
      _ = try await self.fx.auth.authorize(
        .with {
          $0.clientID = sql; $0.redirectUri = sql; $0.codeChallenge = PKCE.challenge(for: RandomTokens.random(bytes: 40)); $0.codeChallengeMethod = "S256"
        }, metadata: AuthFixture.bearer(user))
    }
    XCTAssertEqual(_v22, .invalidArgument, "unknown client_id: invalid_request")
    let _v23 = await statusCode {
      _ = try await self.fx.auth.registerClient(
        .with {
          $0.name = sql; $0.grantTypes = [sql]; $0.redirectUris = [sql]; $0.scopes = [sql]
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(_v23, .invalidArgument)
    // Everything still there and working.
    let everyone = try await fx.auth.listUsers(.init(), metadata: AuthFixture.bearer(admin))
    XCTAssertEqual(everyone.users.count, 2)
  }

  /// Only internal clients are services: a registered third-party client's token is a plain
  /// client principal, refused by service-only methods.
  func testOnlyInternalClientsCallServiceOnlyMethods() async throws {
    let admin = try await fx.adminToken()
    func token(internalService: Bool) async throws -> String {
      let client = try await fx.auth.registerClient(
        .with {
          $0.name = internalService ? "quiz" : "partner"; $0.grantTypes = ["client_credentials"]; $0.confidential = true
          $0.internalService = internalService
        }, metadata: AuthFixture.bearer(admin))
      return try await fx.auth.clientCredentials(
        .with {
          $0.clientID = client.clientID; $0.clientSecret = client.clientSecret
        }
      ).accessToken
    }
    let thirdParty = try await token(internalService: false)
    let service = try await token(internalService: true)
    for bearer in [thirdParty, service] {
      let introspect = await statusCode { _ = try await self.fx.auth.introspectToken(.with { $0.token = "x" }, metadata: AuthFixture.bearer(bearer)) }
      let checkKey = await statusCode { _ = try await self.fx.auth.checkAPIKey(.with { $0.key = "qw_x" }, metadata: AuthFixture.bearer(bearer)) }
      let revoke = await statusCode { _ = try await self.fx.auth.revokeToken(.with { $0.token = "rt_x" }, metadata: AuthFixture.bearer(bearer)) }
      let expected: RPCError.Code? = bearer == service ? nil : .permissionDenied
      XCTAssertEqual([introspect, checkKey, revoke], [expected, expected, expected], bearer == service ? "internal" : "third party")
    }
    // The mark is in the token: internal tokens say so (and carry the service role), others don't.
    let claims = { (token: String) throws -> [String: Any] in
      try JSONSerialization.jsonObject(with: AuthFlowTests.unb64(String(token.split(separator: ".")[1]))) as? [String: Any] ?? [:]
    }
    XCTAssertEqual(try claims(service)["internal"] as? Bool, true)
    XCTAssertEqual(try claims(service)["roles"] as? [String], ["service"])
    XCTAssertNil(try claims(thirdParty)["internal"])
    XCTAssertEqual(try claims(thirdParty)["roles"] as? [String], [])
    // A client has no account of its own.
    let me = await statusCode { _ = try await self.fx.auth.getMe(.init(), metadata: AuthFixture.bearer(thirdParty)) }
    XCTAssertEqual(me, .notFound)
    // Internal clients are admin-made and client_credentials only.
    try await fx.register("eve@example.com")
    let eve = try await fx.login("eve@example.com").accessToken
    let byUser = await statusCode {
      _ = try await self.fx.auth.registerClient(
        .with {
          $0.name = "x"; $0.grantTypes = ["client_credentials"]; $0.confidential = true; $0.internalService = true
        }, metadata: AuthFixture.bearer(eve))
    }
    XCTAssertEqual(byUser, .permissionDenied)
    let withCode = await rpcError {
      _ = try await self.fx.auth.registerClient(
        .with {
          $0.name = "x"; $0.grantTypes = ["client_credentials", "authorization_code"]; $0.redirectUris = ["https://x.example/cb"]
          $0.confidential = true; $0.internalService = true
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(withCode?.code, .invalidArgument)
    XCTAssertEqual(try withCode?.unpackGoogleRPCStatus()?.details.first?.badRequest?.violations.map(\.field), ["internal_service"])
  }
}
