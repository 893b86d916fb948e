@testable import AuthService
import Crypto
import Foundation
import GRPCCore
import GRPCProtobuf
import JWTKit
import QuizwireProtos
import ServiceKit
import XCTest

final class AuthFlowTests: XCTestCase {
  var fx: AuthFixture!

  override func setUp() async throws { self.fx = try await AuthFixture.start() }
  override func tearDown() async throws { await self.fx.stop() }

  func testRegisterLoginRefreshRotationAndReuse() async throws {
    let user = try await fx.register("  Alice@Example.COM ", name: "Alice")
    XCTAssertEqual(user.email, "alice@example.com")
    XCTAssertEqual(user.roles, ["user"])
    let first = try await fx.login("alice@example.com")
    XCTAssertEqual(first.tokenType, "Bearer")
    XCTAssertEqual(first.expiresIn, 900)
    XCTAssertTrue(first.refreshToken.hasPrefix("rt_"))
    let me = try await fx.auth.getMe(.init(), metadata: AuthFixture.bearer(first.accessToken))
    XCTAssertEqual(me.id, user.id)

    // Rotation: each refresh spends the token and returns a new one.
    let second = try await fx.auth.refresh(.with { $0.refreshToken = first.refreshToken })
    XCTAssertNotEqual(second.refreshToken, first.refreshToken)
    let third = try await fx.auth.refresh(.with { $0.refreshToken = second.refreshToken })
    // Reusing a spent token revokes the whole family, including the newest token.
    let reuse = await statusCode { _ = try await self.fx.auth.refresh(.with { $0.refreshToken = first.refreshToken }) }
    XCTAssertEqual(reuse, .unauthenticated)
    let newest = await statusCode { _ = try await self.fx.auth.refresh(.with { $0.refreshToken = third.refreshToken }) }
    XCTAssertEqual(newest, .unauthenticated)
    XCTAssertTrue(fx.log.entries().contains { $0["event"] as? String == "refresh_token_reuse" }, "logged as a security event")
    XCTAssertFalse(fx.log.rawLines().joined().contains(first.refreshToken), "tokens never reach the log")

    // Logout revokes; another login works.
    let again = try await fx.login("alice@example.com")
    _ = try await fx.auth.logout(.with { $0.refreshToken = again.refreshToken })
    let afterLogout = await statusCode { _ = try await self.fx.auth.refresh(.with { $0.refreshToken = again.refreshToken }) }
    XCTAssertEqual(afterLogout, .unauthenticated)
  }

  func testRegistrationRules() async throws {
    try await fx.register("bob@example.com")
    let duplicate = await statusCode { try await self.fx.register("BOB@example.com") }
    XCTAssertEqual(duplicate, .alreadyExists)
    let weak = await rpcError { try await self.fx.register("carol@example.com", "password123") }
    XCTAssertEqual(weak?.code, .invalidArgument)
    let violations = try XCTUnwrap(try weak?.unpackGoogleRPCStatus()?.details.first?.badRequest?.violations)
    XCTAssertEqual(violations.map(\.field), ["password"])
    let short = await rpcError { try await self.fx.register("not-an-email", "short") }
    let fields = try XCTUnwrap(try short?.unpackGoogleRPCStatus()?.details.first?.badRequest?.violations).map(\.field)
    XCTAssertEqual(Set(fields), ["email", "password"])
  }

  func testLoginFailuresLookAlikeAndLockOut() async throws {
    try await fx.register("dave@example.com")
    let unknown = await rpcError { _ = try await self.fx.login("nobody@example.com") }
    let wrong = await rpcError { _ = try await self.fx.login("dave@example.com", "wrong password here") }
    XCTAssertEqual(unknown?.code, .unauthenticated)
    XCTAssertEqual(unknown?.code, wrong?.code)
    XCTAssertEqual(unknown?.message, wrong?.message, "same answer for unknown user and wrong password")
    for _ in 0..<4 { _ = await statusCode { _ = try await self.fx.login("dave@example.com", "wrong password here") } }
    let locked = await statusCode { _ = try await self.fx.login("dave@example.com") }
    XCTAssertEqual(locked, .resourceExhausted, "locked even with the right password")
  }

  func testForgedAndInvalidTokensAreRejected() async throws {
    try await fx.register("erin@example.com")
    let good = try await fx.login("erin@example.com").accessToken
    let parts = good.split(separator: ".").map(String.init)
    let header = try JSONSerialization.jsonObject(with: Self.unb64(parts[0])) as! [String: String]
    let kid = try XCTUnwrap(header["kid"])
    XCTAssertEqual(header["typ"], "at+jwt")
    XCTAssertEqual(header["alg"], "ES256")
    let jwks = try await fx.auth.getJWKS(.init()).jwksJson
    let jwk = try XCTUnwrap(try PublishedJWKSet.parse(jwks).keys.first { $0.kid == kid })
    XCTAssertEqual(jwk.use, "sig")

    func me(_ token: String) async -> RPCError.Code? {
      await statusCode { _ = try await self.fx.auth.getMe(.init(), metadata: AuthFixture.bearer(token)) }
    }
    // alg: none with the real claims
    let none = Self.b64(try JSONSerialization.data(withJSONObject: ["alg": "none", "typ": "at+jwt", "kid": kid])) + "." + parts[1] + "."
    let _v1 = await me(none)
    XCTAssertEqual(_v1, .unauthenticated)
    // HS256 signed with the published public key as the HMAC secret
    let publicPEM = try ES256PublicKey(parameters: (x: jwk.x!, y: jwk.y!)).pemRepresentation
    let hsHeader = Self.b64(try JSONSerialization.data(withJSONObject: ["alg": "HS256", "typ": "at+jwt", "kid": kid]))
    let mac = HMAC<SHA256>.authenticationCode(for: Data((hsHeader + "." + parts[1]).utf8), using: SymmetricKey(data: Data(publicPEM.utf8)))
    let _v2 = await me(hsHeader + "." + parts[1] + "." + Self.b64(Data(mac)))
    XCTAssertEqual(_v2, .unauthenticated)
    // Payload tampered (roles: admin) under the original signature
    var claims = try JSONSerialization.jsonObject(with: Self.unb64(parts[1])) as! [String: Any]
    claims["roles"] = ["admin"]
    let tampered = parts[0] + "." + Self.b64(try JSONSerialization.data(withJSONObject: claims)) + "." + parts[2]
    let _v3 = await me(tampered)
    XCTAssertEqual(_v3, .unauthenticated)
    // Correctly signed by the service's key, but expired / wrong audience / wrong issuer
    let now = Int64(Date().timeIntervalSince1970)
    func signed(iss: String = "quizwire-auth", aud: String = "quizwire", exp: Int64) async throws -> String {
      try await fx.server.keyRing.sign(AccessTokenClaims(sub: "u-x", iss: iss, aud: [aud], exp: exp, iat: now - 10, jti: "j", roles: ["admin"]))
    }
    let _v4 = await me(try await signed(exp: now - 3600))
    XCTAssertEqual(_v4, .unauthenticated)
    let _v5 = await me(try await signed(aud: "other-api", exp: now + 600))
    XCTAssertEqual(_v5, .unauthenticated)
    let _v6 = await me(try await signed(iss: "https://evil.example", exp: now + 600))
    XCTAssertEqual(_v6, .unauthenticated)
    // A well-formed token from a key the service never had (unknown kid)
    let stranger = JWTKeyCollection()
    await stranger.add(ecdsa: ES256PrivateKey(), kid: "k-unknown")
    var h = JWTHeader()
    h.typ = "at+jwt"
    let foreign = try await stranger.sign(
      AccessTokenClaims(sub: "u-x", iss: "quizwire-auth", aud: ["quizwire"], exp: now + 600, iat: now, jti: "j"), kid: "k-unknown", header: h)
    let _v7 = await me(foreign)
    XCTAssertEqual(_v7, .unauthenticated)
    let _v8 = await me(good)
    XCTAssertNil(_v8, "the genuine token still works")
    let _v9 = await statusCode { _ = try await self.fx.auth.getMe(.init()) }
    XCTAssertEqual(_v9, .unauthenticated)
  }

  func testKeyRotationKeepsOldTokensValid() async throws {
    let admin = try await fx.adminToken()
    try await fx.register("fay@example.com")
    let before = try await fx.login("fay@example.com").accessToken
    let newKid = try await fx.auth.rotateSigningKey(.init(), metadata: AuthFixture.bearer(admin)).kid
    let after = try await fx.login("fay@example.com").accessToken
    XCTAssertTrue(try Self.kid(of: after) == newKid)
    XCTAssertNotEqual(try Self.kid(of: before), newKid)
    _ = try await fx.auth.getMe(.init(), metadata: AuthFixture.bearer(before))
    _ = try await fx.auth.getMe(.init(), metadata: AuthFixture.bearer(after))
    let kids = try PublishedJWKSet.parse(try await fx.auth.getJWKS(.init()).jwksJson).keys.compactMap(\.kid)
    XCTAssertEqual(Set(kids), [try Self.kid(of: before), newKid])
    // Non-admins may not rotate.
    let _v10 = await statusCode { _ = try await self.fx.auth.rotateSigningKey(.init(), metadata: AuthFixture.bearer(after)) }
    XCTAssertEqual(_v10, .permissionDenied)
  }

  func testAdminListsUsersAndSetsRoles() async throws {
    let admin = try await fx.adminToken()
    for i in 0..<5 { try await fx.register("user\(i)@example.com") }
    var all: [String] = []
    var cursor = ""
    repeat {
      let page = try await fx.auth.listUsers(
        .with {
          $0.limit = 2; $0.cursor = cursor
        }, metadata: AuthFixture.bearer(admin))
      all += page.users.map(\.email)
      cursor = page.nextCursor
    } while !cursor.isEmpty
    XCTAssertEqual(all.count, 6)
    XCTAssertEqual(Set(all).count, 6)
    let badCursor = await statusCode { _ = try await self.fx.auth.listUsers(.with { $0.cursor = "' OR 1=1 --" }, metadata: AuthFixture.bearer(admin)) }
    XCTAssertEqual(badCursor, .invalidArgument)
    let target = try await fx.register("author@example.com")
    let token = try await fx.login("author@example.com")
    let updated = try await fx.auth.setRoles(
      .with {
        $0.userID = target.id; $0.roles = ["user", "author"]
      }, metadata: AuthFixture.bearer(admin))
    XCTAssertEqual(updated.roles, ["author", "user"])
    // New roles mean a new sign-in: the old refresh token is revoked.
    let _v11 = await statusCode { _ = try await self.fx.auth.refresh(.with { $0.refreshToken = token.refreshToken }) }
    XCTAssertEqual(_v11, .unauthenticated)
    let _v12 = await statusCode {
      _ = try await self.fx.auth.setRoles(
        .with {
          $0.userID = target.id; $0.roles = ["root"]
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(_v12, .invalidArgument)
    let _v13 = await statusCode {
      _ = try await self.fx.auth.setRoles(
        .with {
          $0.userID = "u-missing"; $0.roles = ["user"]
        }, metadata: AuthFixture.bearer(admin))
    }
    XCTAssertEqual(_v13, .notFound)
    let _v14 = await statusCode { _ = try await self.fx.auth.listUsers(.init(), metadata: AuthFixture.bearer(token.accessToken)) }
    XCTAssertEqual(_v14, .permissionDenied)
  }

  static func kid(of token: String) throws -> String {
    let header = try JSONSerialization.jsonObject(with: unb64(String(token.split(separator: ".")[0]))) as! [String: String]
    return header["kid"]!
  }

  static func b64(_ data: Data) -> String { data.base64urlEncoded() }

  static func unb64(_ text: String) -> Data {
    var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    s += String(repeating: "=", count: (4 - s.count % 4) % 4)
    return Data(base64Encoded: s)!
  }
}
