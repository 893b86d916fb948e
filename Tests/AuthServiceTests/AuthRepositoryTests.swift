@testable import AuthService
import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

/// Every repository on both databases (PostgreSQL when QUIZWIRE_TEST_POSTGRES_URL is set).
final class AuthRepositoryTests: XCTestCase {
  func migrated(_ db: Database) async throws {
    try await Migrator(service: AuthMigrations.service, migrations: AuthMigrations.all).migrate(db)
  }

  func user(_ id: String, _ email: String, at ms: Int64) -> UserRecord {
    UserRecord(
      id: id, email: email, displayName: "D'Arcy \"; DROP TABLE users;--", passwordHash: "$scrypt$x", roles: ["user"],
      failedLogins: 0, lockedUntilMs: 0, createdAtMs: ms, updatedAtMs: ms)
  }

  func testUsers() async throws {
    try await TestDatabases.each { db in
      try await self.migrated(db)
      let users = SQLUserRepository()
      try await db.transaction { uow in
        for i in 0..<5 { try await users.insert(self.user("u-\(i)", "u\(i)@example.com", at: 1000 + Int64(i / 2)), in: uow) }
      }
      do {
        try await db.transaction { uow in try await users.insert(self.user("u-x", "u1@example.com", at: 1), in: uow) }
        XCTFail("duplicate email must be refused")
      } catch StorageError.uniqueViolation {}
      let found = try await db.read { uow in try await users.find(email: "u3@example.com", in: uow) }
      XCTAssertEqual(found?.id, "u-3")
      XCTAssertEqual(found?.displayName, "D'Arcy \"; DROP TABLE users;--", "stored verbatim, never executed")
      let injected = try await db.read { uow in try await users.find(email: "' OR '1'='1", in: uow) }
      XCTAssertNil(injected)
      // Keyset pagination over (created_at, id), with ties on created_at.
      var seen: [String] = []
      var after: (createdAtMs: Int64, id: String)?
      while true {
        let page = try await db.read { uow in try await users.list(after: after, limit: 2, in: uow) }
        if page.isEmpty { break }
        seen += page.map(\.id)
        after = (page.last!.createdAtMs, page.last!.id)
      }
      XCTAssertEqual(seen, ["u-0", "u-1", "u-2", "u-3", "u-4"])
      let changed = try await db.transaction { uow in try await users.setRoles(id: "u-2", roles: ["author", "user"], nowMs: 5, in: uow) }
      XCTAssertEqual(changed, .changed(version: 2), "a roles change bumps the profile version")
      let same = try await db.transaction { uow in try await users.setRoles(id: "u-2", roles: ["user", "author"], nowMs: 6, in: uow) }
      XCTAssertEqual(same, .unchanged, "the same roles again change nothing")
      let missing = try await db.transaction { uow in try await users.setRoles(id: "nope", roles: ["user"], nowMs: 5, in: uow) }
      XCTAssertEqual(missing, .notFound)
      try await db.transaction { uow in try await users.recordLogin(id: "u-2", failedLogins: 3, lockedUntilMs: 99, in: uow) }
      let u2 = try await db.read { uow in try await users.find(id: "u-2", in: uow) }
      XCTAssertEqual(u2?.roles, ["author", "user"])
      XCTAssertEqual(u2?.failedLogins, 3)
      XCTAssertEqual(u2?.lockedUntilMs, 99)
    }
  }

  func testRefreshTokensAndCodes() async throws {
    try await TestDatabases.each { db in
      try await self.migrated(db)
      let users = SQLUserRepository(), tokens = SQLTokenRepository(), clients = SQLClientRepository()
      try await db.transaction { uow in
        try await users.insert(self.user("u-1", "a@example.com", at: 1), in: uow)
        try await clients.insert(
          OAuthClientRecord(
            clientID: "cl_1", secretHash: nil, name: "web", redirectURIs: ["https://app/cb"],
            grantTypes: ["authorization_code"], scopes: ["quiz:read"], createdAtMs: 1), in: uow)
        for (i, family) in ["f1", "f1", "f2"].enumerated() {
          try await tokens.insert(
            RefreshTokenRecord(
              id: "t\(i)", tokenHash: "h\(i)", familyID: family, userID: "u-1", clientID: i == 2 ? "cl_1" : nil,
              scope: "", expiresAtMs: 10_000, usedAtMs: nil, revokedAtMs: nil, createdAtMs: 1), in: uow)
        }
      }
      let t0 = try await db.read { uow in try await tokens.find(tokenHash: "h0", in: uow) }
      XCTAssertEqual(t0?.familyID, "f1")
      XCTAssertNil(t0?.clientID)
      let _v3 = try await db.transaction { uow in try await tokens.markUsed(id: "t0", nowMs: 5, in: uow) }
      XCTAssertTrue(_v3)
      let _v4 = try await db.transaction { uow in try await tokens.markUsed(id: "t0", nowMs: 6, in: uow) }
      XCTAssertFalse(_v4, "a token is spent once")
      let _v5 = try await db.transaction { uow in try await tokens.revokeFamily("f1", nowMs: 7, in: uow) }
      XCTAssertEqual(_v5, 2)
      let t1 = try await db.read { uow in try await tokens.find(tokenHash: "h1", in: uow) }
      XCTAssertEqual(t1?.revokedAtMs, 7)
      let t2 = try await db.read { uow in try await tokens.find(tokenHash: "h2", in: uow) }
      XCTAssertNil(t2?.revokedAtMs, "other families untouched")
      XCTAssertEqual(t2?.clientID, "cl_1")

      let code = AuthCodeRecord(
        codeHash: "c1", clientID: "cl_1", userID: "u-1", redirectURI: "https://app/cb", codeChallenge: "x",
        scope: "quiz:read", expiresAtMs: 100, usedAtMs: nil, familyID: nil, createdAtMs: 1)
      try await db.transaction { uow in try await tokens.insert(code, in: uow) }
      let _v6 = try await db.transaction { uow in try await tokens.consume(codeHash: "c1", familyID: "f9", nowMs: 2, in: uow) }
      XCTAssertTrue(_v6)
      let _v7 = try await db.transaction { uow in try await tokens.consume(codeHash: "c1", familyID: "f10", nowMs: 3, in: uow) }
      XCTAssertFalse(_v7)
      let used = try await db.read { uow in try await tokens.find(codeHash: "c1", in: uow) }
      XCTAssertEqual(used?.familyID, "f9")
      XCTAssertEqual(used?.usedAtMs, 2)
      let client = try await db.read { uow in try await clients.find(clientID: "cl_1", in: uow) }
      XCTAssertEqual(client?.redirectURIs, ["https://app/cb"])
      XCTAssertEqual(client?.grantTypes, ["authorization_code"])
      XCTAssertNil(client?.secretHash)
      XCTAssertEqual(client?.isInternal, false, "migration 2's default")

      // Internal clients: stored, read back and updated in place (the flag round-trips as a
      // boolean on PostgreSQL and an integer on SQLite).
      var service = OAuthClientRecord(
        clientID: "quiz", secretHash: "h1", name: "quiz", redirectURIs: [], grantTypes: ["client_credentials"],
        scopes: [], createdAtMs: 5, isInternal: true)
      try await db.transaction { uow in try await clients.insert(service, in: uow) }
      let _v11 = try await db.read { uow in try await clients.find(clientID: "quiz", in: uow) }
      XCTAssertEqual(_v11, service)
      service.secretHash = "h2"
      service.isInternal = false
      let _v12 = try await db.transaction { [service] uow in try await clients.update(service, in: uow) }
      XCTAssertTrue(_v12)
      let _v13 = try await db.read { uow in try await clients.find(clientID: "quiz", in: uow) }
      XCTAssertEqual(_v13, service)
      var missing = service
      missing.clientID = "nobody"
      let _v14 = try await db.transaction { [missing] uow in try await clients.update(missing, in: uow) }
      XCTAssertFalse(_v14)
    }
  }

  func testKeys() async throws {
    try await TestDatabases.each { db in
      try await self.migrated(db)
      let users = SQLUserRepository(), keys = SQLKeyRepository()
      try await db.transaction { uow in
        try await users.insert(self.user("u-1", "a@example.com", at: 1), in: uow)
        try await keys.insert(
          SigningKeyRecord(kid: "k1", alg: "ES256", sealedPrivateKey: Data([0, 1, 2, 255]), publicJWK: "{}", createdAtMs: 1, retiredAtMs: nil), in: uow)
        try await keys.insert(
          SigningKeyRecord(kid: "k2", alg: "ES256", sealedPrivateKey: Data([9]), publicJWK: "{}", createdAtMs: 2, retiredAtMs: nil), in: uow)
        try await keys.retireSigningKeys(except: "k2", nowMs: 50, in: uow)
      }
      let live = try await db.read { uow in try await keys.signingKeys(retiredAfterMs: 10, in: uow) }
      XCTAssertEqual(live.map(\.kid), ["k2", "k1"])
      XCTAssertEqual(live.last?.sealedPrivateKey, Data([0, 1, 2, 255]), "binary round trip")
      XCTAssertEqual(live.last?.retiredAtMs, 50)
      let onlyNew = try await db.read { uow in try await keys.signingKeys(retiredAfterMs: 60, in: uow) }
      XCTAssertEqual(onlyNew.map(\.kid), ["k2"])

      let record = APIKeyRecord(
        id: "0123456789abcdef", secretHash: "s", ownerID: "u-1", name: "ci", scopes: ["quiz:read", "quiz:write"],
        rateLimitPerSecond: 2.5, createdAtMs: 1, expiresAtMs: nil, revokedAtMs: nil, lastUsedAtMs: nil)
      try await db.transaction { uow in try await keys.insert(record, in: uow) }
      let _v8 = try await db.read { uow in try await keys.apiKey(id: record.id, in: uow) }
      XCTAssertEqual(_v8, record)
      let _v9 = try await db.transaction { uow in try await keys.revokeAPIKey(id: record.id, ownerID: "someone-else", nowMs: 3, in: uow) }
      XCTAssertFalse(_v9)
      let _v10 = try await db.transaction { uow in try await keys.revokeAPIKey(id: record.id, ownerID: "u-1", nowMs: 3, in: uow) }
      XCTAssertTrue(_v10)
      try await db.transaction { uow in
        try await keys.expireAPIKey(id: record.id, atMs: 77, in: uow)
        try await keys.touchAPIKey(id: record.id, nowMs: 4, in: uow)
      }
      let listed = try await db.read { uow in try await keys.apiKeys(ownerID: "u-1", in: uow) }
      XCTAssertEqual(listed.count, 1)
      XCTAssertEqual(listed[0].revokedAtMs, 3)
      XCTAssertEqual(listed[0].expiresAtMs, 77)
      XCTAssertEqual(listed[0].lastUsedAtMs, 4)
    }
  }

  /// Every lookup the service makes uses an index, on both databases.
  func testHotQueriesUseIndexes() async throws {
    try await TestDatabases.each { db in
      try await self.migrated(db)
      let queries: [(String, SQLQueryString)] = [
        ("users by email", "SELECT id FROM users WHERE email = \(bind: "a@example.com")"),
        ("users by id", "SELECT id FROM users WHERE id = \(bind: "u-1")"),
        ("users page", "SELECT id FROM users WHERE created_at_ms > \(bind: 5) ORDER BY created_at_ms, id LIMIT 10"),
        ("refresh by hash", "SELECT id FROM refresh_tokens WHERE token_hash = \(bind: "h")"),
        ("refresh by family", "UPDATE refresh_tokens SET revoked_at_ms = 1 WHERE family_id = \(bind: "f") AND revoked_at_ms IS NULL"),
        ("refresh by user", "UPDATE refresh_tokens SET revoked_at_ms = 1 WHERE user_id = \(bind: "u") AND revoked_at_ms IS NULL"),
        ("api key by id", "SELECT id FROM api_keys WHERE id = \(bind: "k")"),
        ("api keys by owner", "SELECT id FROM api_keys WHERE owner_id = \(bind: "u")"),
        ("code by hash", "SELECT client_id FROM auth_codes WHERE code_hash = \(bind: "c")"),
        ("client by id", "SELECT name FROM oauth_clients WHERE client_id = \(bind: "cl")"),
      ]
      try await db.read { uow in
        // Empty tables: make the planner choose as it would with data, not by size.
        if uow.dialect == .postgres { try await uow.sql.raw("SET enable_seqscan = off").run() }
        for (name, query) in queries {
          let prefix: SQLQueryString = uow.dialect == .sqlite ? "EXPLAIN QUERY PLAN " : "EXPLAIN "
          let rows = try await uow.sql.raw(prefix + query).all()
          let plan = try rows.map { row in
            try row.decode(column: uow.dialect == .sqlite ? "detail" : "QUERY PLAN", as: String.self)
          }.joined(separator: " | ")
          let usesIndex =
            uow.dialect == .sqlite
            ? plan.contains("USING INDEX") || plan.contains("USING PRIMARY KEY") || plan.contains("USING COVERING INDEX")
            : plan.contains("Index Scan") || plan.contains("Index Only Scan") || plan.contains("Bitmap Index Scan")
          XCTAssertTrue(usesIndex, "\(uow.dialect) \(name) does not use an index: \(plan)")
        }
      }
    }
  }
}
