@testable import AuthService
import Foundation
import GRPCCore
import QuizwireProtos
import ServiceKit
import Storage
import XCTest

/// Internal clients made at start, the audit trail of security actions, and the service's
/// injectable clock — each through the real service on a real database.
final class AuthInternalClientsAndAuditTests: XCTestCase {
  var fx: AuthFixture!

  override func setUp() async throws { self.fx = try await AuthFixture.start() }
  override func tearDown() async throws { await self.fx.stop() }

  /// `quizwire up` makes the suite's clients on every start: creating once, changing nothing
  /// the second time, re-keying on a new secret and promoting a plain client.
  func testEnsureInternalClientIsIdempotentAndReKeys() async throws {
    let audit = CapturedLog()
    let service = fx.server.service.with(audit: AuditLog(sink: audit.sink))
    let clients = SQLClientRepository()
    func stored(_ id: String) async throws -> OAuthClientRecord? {
      try await fx.server.database.read { uow in try await clients.find(clientID: id, in: uow) }
    }
    func token(_ id: String, _ secret: String) async throws -> String {
      try await fx.auth.clientCredentials(
        .with {
          $0.clientID = id; $0.clientSecret = secret
        }
      ).accessToken
    }

    try await service.ensureInternalClient(clientID: "scoring", name: "scoring", secret: "first-secret-0123456789")
    let found = try await stored("scoring")
    let created = try XCTUnwrap(found)
    try await service.ensureInternalClient(clientID: "scoring", name: "scoring", secret: "first-secret-0123456789")
    let _v1 = try await stored("scoring")
    XCTAssertEqual(_v1, created, "a second run changes nothing")
    XCTAssertTrue(created.isInternal)
    XCTAssertEqual(created.grantTypes, ["client_credentials"])
    XCTAssertEqual(created.secretHash, RandomTokens.digest("first-secret-0123456789"))
    let first = try await token("scoring", "first-secret-0123456789")
    _ = try await fx.auth.checkAPIKey(.with { $0.key = "qw_x" }, metadata: AuthFixture.bearer(first))

    // A new secret re-keys the client: the old one stops working, the new one works.
    try await service.ensureInternalClient(clientID: "scoring", name: "scoring", secret: "second-secret-0123456789")
    let old = await statusCode { _ = try await token("scoring", "first-secret-0123456789") }
    XCTAssertEqual(old, .unauthenticated)
    _ = try await token("scoring", "second-secret-0123456789")
    let _v2 = try await stored("scoring")?.createdAtMs
    XCTAssertEqual(_v2, created.createdAtMs, "updated in place")

    // A plain client of that id becomes internal.
    let admin = try await fx.adminToken()
    let plain = try await fx.auth.registerClient(
      .with {
        $0.name = "gateway"; $0.grantTypes = ["client_credentials"]; $0.confidential = true
      }, metadata: AuthFixture.bearer(admin))
    try await service.ensureInternalClient(clientID: plain.clientID, name: "gateway", secret: "gateway-secret-0123456789")
    let _v3 = try await stored(plain.clientID)?.isInternal
    XCTAssertEqual(_v3, true)
    let gateway = try await token(plain.clientID, "gateway-secret-0123456789")
    _ = try await fx.auth.introspectToken(.with { $0.token = "x" }, metadata: AuthFixture.bearer(gateway))

    // One audit event per change, none for the run that changed nothing; never the secret.
    let events = audit.entries().filter { $0["service"] as? String == "audit" }
    XCTAssertEqual(events.map { $0["change"] as? String }, ["created", "updated", "updated"])
    XCTAssertEqual(events.map { $0["actor"] as? String }, ["system", "system", "system"])
    XCTAssertFalse(audit.rawLines().joined().contains("secret-0123456789"))
    let invalid = await statusCode { try await service.ensureInternalClient(clientID: "bad id", name: "x", secret: "s") }
    XCTAssertEqual(invalid, .invalidArgument)
  }

  /// Admin SetRoles and API-key creation each write one audit line: who, what, on what,
  /// request id and outcome — and no credential.
  func testSecurityActionsAreAudited() async throws {
    let audit = CapturedLog()
    let service = fx.server.service.with(audit: AuditLog(sink: audit.sink))
    let adminToken = try await fx.adminToken()
    let admin = try await fx.auth.getMe(.init(), metadata: AuthFixture.bearer(adminToken))
    let target = try await fx.register("tess@example.com")

    let updated = try await asCaller(Principal(kind: .user, subject: admin.id, roles: ["admin"]), requestID: "req-roles-1") {
      try await service.setRoles(
        request: Auth_V1_SetRolesRequest.with {
          $0.userID = target.id; $0.roles = ["user", "author"]
        },
        context: inProcessContext(Auth_V1_AuthService.Method.SetRoles.descriptor))
    }
    XCTAssertEqual(updated.roles, ["author", "user"])
    let created = try await asCaller(Principal(kind: .user, subject: target.id, roles: ["author", "user"]), requestID: "req-key-1") {
      try await service.createAPIKey(
        request: Auth_V1_CreateAPIKeyRequest.with {
          $0.name = "ci"; $0.scopes = ["quiz:read"]
        },
        context: inProcessContext(Auth_V1_AuthService.Method.CreateAPIKey.descriptor))
    }
    // A refused one is recorded too.
    let refused = await statusCode {
      _ = try await asCaller(Principal(kind: .apiKey, subject: created.apiKey.id), requestID: "req-key-2") {
        try await service.createAPIKey(
          request: Auth_V1_CreateAPIKeyRequest.with { $0.name = "ci" },
          context: inProcessContext(Auth_V1_AuthService.Method.CreateAPIKey.descriptor))
      }
    }
    XCTAssertEqual(refused, .permissionDenied)

    let events = audit.entries().filter { $0["service"] as? String == "audit" }
    XCTAssertEqual(events.count, 3, "\(events)")
    let roles = try XCTUnwrap(events.first { $0["request_id"] as? String == "req-roles-1" })
    XCTAssertEqual(roles["actor"] as? String, "user:\(admin.id)")
    XCTAssertEqual(roles["action"] as? String, "user.set_roles")
    XCTAssertEqual(roles["target"] as? String, target.id)
    XCTAssertEqual(roles["outcome"] as? String, "success")
    XCTAssertEqual(roles["roles"] as? String, "author,user")
    let key = try XCTUnwrap(events.first { $0["request_id"] as? String == "req-key-1" })
    XCTAssertEqual(key["actor"] as? String, "user:\(target.id)")
    XCTAssertEqual(key["action"] as? String, "api_key.create")
    XCTAssertEqual(key["target"] as? String, created.apiKey.id)
    XCTAssertEqual(key["outcome"] as? String, "success")
    let denied = try XCTUnwrap(events.first { $0["request_id"] as? String == "req-key-2" })
    XCTAssertEqual(denied["outcome"] as? String, "denied")
    XCTAssertEqual(denied["actor"] as? String, "api_key:\(created.apiKey.id)")
    let text = audit.rawLines().joined()
    let keySecret = String(created.key.split(separator: "_", maxSplits: 2)[2])
    for credential in [created.key, keySecret, adminToken] { XCTAssertFalse(text.contains(credential)) }
    for event in events {
      XCTAssertTrue(Set(event.keys).isDisjoint(with: ["key", "secret", "token", "password", "client_secret"]), "\(event.keys)")
    }
  }

  func testTheServiceReadsTimeFromItsClock() async throws {
    let fixed = Date(timeIntervalSince1970: 1_000_000_000)
    let service = fx.server.service.with(now: { fixed })
    let user = try await fx.register("clock@example.com")
    let created = try await asCaller(Principal(kind: .user, subject: user.id, roles: ["user"]), requestID: "req-clock") {
      try await service.createAPIKey(
        request: Auth_V1_CreateAPIKeyRequest.with {
          $0.name = "ci"; $0.ttlSeconds = 60
        },
        context: inProcessContext(Auth_V1_AuthService.Method.CreateAPIKey.descriptor))
    }
    XCTAssertEqual(created.apiKey.createdAtUnix, 1_000_000_000)
    XCTAssertEqual(created.apiKey.expiresAtUnix, 1_000_000_060)
    // Expiry is judged by the same clock: alive at its time, gone a minute later.
    let during = try await service.lookUpAPIKey(created.key)
    XCTAssertEqual(during?.0.id, created.apiKey.id)
    let after = try await fx.server.service.with(now: { fixed.addingTimeInterval(61) }).lookUpAPIKey(created.key)
    XCTAssertNil(after?.0.id)
  }
}
