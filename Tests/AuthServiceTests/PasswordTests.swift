import Foundation
import HummingbirdBcrypt
import ServiceKit
import Storage
import XCTest

@testable import AuthService

final class PasswordTests: XCTestCase {
  let fast = ScryptParameters(logN: 10, r: 8, p: 1)

  func testHashFormatVerifyAndRehashOnWeakerParameters() async throws {
    let hasher = PasswordHasher(parameters: self.fast)
    let hash = try await hasher.hash("a good long password")
    XCTAssertTrue(hash.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
    let again = try await hasher.hash("a good long password")
    XCTAssertNotEqual(hash, again, "salted")
    let ok = try await hasher.verify("a good long password", against: hash)
    XCTAssertEqual(ok, .init(matches: true, needsRehash: false))
    let wrong = try await hasher.verify("a good long passworD", against: hash)
    XCTAssertFalse(wrong.matches)
    // Raised parameters: old hashes still verify and are flagged for an upgrade.
    let stronger = PasswordHasher(parameters: ScryptParameters(logN: 11, r: 8, p: 1))
    let old = try await stronger.verify("a good long password", against: hash)
    XCTAssertEqual(old, .init(matches: true, needsRehash: true))
    let dummy = try await hasher.verifyAgainstDummy("anything at all")
    XCTAssertFalse(dummy)
    do {
      _ = try await hasher.verify("x", against: "$scrypt$ln=99,r=8,p=1$AAAA$BBBB")
      XCTFail("a malformed hash must be refused")
    } catch PasswordHashError.unrecognizedHash {}
  }

  func testProductionParametersAreOWASPs() {
    XCTAssertEqual(ScryptParameters.production, ScryptParameters(logN: 17, r: 8, p: 1))
    XCTAssertEqual(ScryptParameters.production.memoryBytes, 128 << 20)
  }

  func testHashingIsBoundedAndExcessIsRefused() async throws {
    // One at a time, one waiting: of five concurrent hashes some must be refused, and the
    // rest finish.
    let hasher = PasswordHasher(parameters: ScryptParameters(logN: 14, r: 8, p: 1), maxConcurrent: 1, maxWaiting: 1)
    let results = await withTaskGroup(of: Bool.self) { group in
      for _ in 0..<5 { group.addTask { (try? await hasher.hash("a good long password")) != nil } }
      return await group.reduce(into: [Bool]()) { $0.append($1) }
    }
    XCTAssertGreaterThanOrEqual(results.filter { $0 }.count, 2)
    XCTAssertGreaterThanOrEqual(results.filter { !$0 }.count, 1)
    _ = try await hasher.hash("still works afterwards")
  }

  func testPolicyAndEmailRules() {
    XCTAssertEqual(EmailAddress.normalize("  Ann@Example.ORG "), "ann@example.org")
    for bad in ["no-at", "a@b", "@example.com", "a@@example.com", "a b@example.com", "' OR '1'='1", "a@example.com.", "ä@example.com"] {
      XCTAssertNil(EmailAddress.normalize(bad), bad)
    }
    XCTAssertEqual(PasswordPolicy.violations("short", email: nil), ["must be at least 10 characters"])
    XCTAssertEqual(PasswordPolicy.violations("password123", email: nil), ["is too common"])
    XCTAssertEqual(PasswordPolicy.violations("ann@example.org", email: "ann@example.org"), ["must not be the email address"])
    XCTAssertEqual(PasswordPolicy.violations("correct horse battery", email: "ann@example.org"), [])
  }

  /// The WHATWG (HTML `input type=email`) grammar, plus our two-label and length rules.
  func testEmailFollowsTheWHATWGGrammar() {
    for good in ["o'brien@example.com", "a.b+tag@sub.example.co.uk", "x!#$%&*/=?^_`{|}~-y@example.com", "a@1-2.example", "a@x.io"] {
      XCTAssertEqual(EmailAddress.normalize(good), good.lowercased(), good)
    }
    let bad: [String] = [
      "admin@example.com'--", "admin@example.com;", "a@-example.com", "a@example-.com", "a@exa_mple.com", "a@example..com",
      "a@.example.com", "a\"b@example.com", "a(b)@example.com", "a@[127.0.0.1]", "a@exam ple.com",
      "a@localhost", String(repeating: "a", count: 65) + "@example.com", "a@" + String(repeating: "b", count: 64) + ".com",
    ]
    for address in bad { XCTAssertNil(EmailAddress.normalize(address), address) }
    XCTAssertNotNil(EmailAddress.normalize("a@" + String(repeating: "b", count: 63) + ".com"), "63-character labels are fine")
  }

  func testPKCE() {
    // RFC 7636 appendix B.
    XCTAssertEqual(PKCE.challenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    XCTAssertTrue(PKCE.verify(verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"))
    XCTAssertFalse(PKCE.isValidVerifier("too-short"))
    XCTAssertFalse(PKCE.isValidVerifier(String(repeating: "a", count: 42) + "!"))
  }
}

final class BcryptImportTests: XCTestCase {
  /// A user imported with a bcrypt hash signs in, and the hash becomes scrypt.
  func testImportedBcryptUserSignsInAndIsUpgraded() async throws {
    let fx = try await AuthFixture.start()
    do {
      let bcrypt = Bcrypt.hash("imported password 1", cost: 4)
      try await fx.server.database.transaction { uow in
        try await SQLUserRepository().insert(
          UserRecord(
            id: "u-imported", email: "old@example.com", displayName: "Old", passwordHash: bcrypt, roles: ["user"],
            failedLogins: 0, lockedUntilMs: 0, createdAtMs: 1, updatedAtMs: 1), in: uow)
      }
      _ = try await fx.login("old@example.com", "imported password 1")
      let stored = try await fx.server.database.read { uow in try await SQLUserRepository().find(id: "u-imported", in: uow) }
      XCTAssertTrue(stored?.passwordHash.hasPrefix("$scrypt$") ?? false)
      _ = try await fx.login("old@example.com", "imported password 1")
      let wrong = await statusCode { _ = try await fx.login("old@example.com", "not the password") }
      XCTAssertEqual(wrong, .unauthenticated)
    } catch {
      await fx.stop()
      throw error
    }
    await fx.stop()
  }
}
