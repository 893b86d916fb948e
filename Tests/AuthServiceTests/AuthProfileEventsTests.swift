@testable import AuthService
import Foundation
import GRPCCore
import QuizwireProtos
import ServiceKit
import Storage
import TestSupport
import XCTest

/// UpdateProfile, BatchGetUsers and the `user.*` events each profile change appends to the
/// outbox in its own unit of work — through the real service on a real database.
final class AuthProfileEventsTests: XCTestCase {
  var fx: AuthFixture!

  override func setUp() async throws { self.fx = try await AuthFixture.start() }
  override func tearDown() async throws { await self.fx.stop() }

  func events(_ type: String? = nil) async throws -> [Outbox.Event] {
    let all = try await fx.server.database.read { uow in try await Outbox.read(after: 0, limit: 1000, in: uow) }
    return all.filter { type == nil || $0.type == type }
  }

  func signedIn(_ email: String, name: String = "") async throws -> (user: Auth_V1_User, metadata: Metadata) {
    let user = try await fx.register(email, name: name)
    return (user, AuthFixture.bearer(try await fx.login(email).accessToken))
  }

  func testDisplayNameRules() {
    let table: [(String, Bool)] = [
      ("Ann", true), ("  Ann Lee  ", true), ("Zoë 🦊", true), (String(repeating: "x", count: 100), true),
      ("é" + String(repeating: "x", count: 99), true), ("", false), ("   ", false), ("\u{200B}\u{200D}", false),
      (String(repeating: "x", count: 101), false), ("bell\u{7}", false), ("tab\tinside", false), ("new\nline", false),
      ("\u{202E}", false),
    ]
    for (name, valid) in table {
      let violations = Auth_V1_UpdateProfileRequest.with { $0.displayName = name }.fieldViolations.violations
      XCTAssertEqual(violations.isEmpty, valid, "\(name.debugDescription): \(violations.map(\.violationDescription))")
      XCTAssertTrue(violations.allSatisfy { $0.field == "display_name" })
      XCTAssertEqual(AuthService.validDisplayName(name) != nil, valid, name.debugDescription)
    }
    XCTAssertEqual(AuthService.validDisplayName("  Ann Lee \n"), "Ann Lee")
    XCTAssertEqual(Auth_V1_BatchGetUsersRequest.with { $0.ids = Array(repeating: "u-x", count: 1000) }.fieldViolations.violations.count, 0)
    let tooMany = Auth_V1_BatchGetUsersRequest.with { $0.ids = Array(repeating: "u-x", count: 1001) }
    XCTAssertEqual(tooMany.fieldViolations.violations.map(\.field), ["ids"])
  }

  func testRegisterAndRenameAppendTheirEventsWithGrowingVersions() async throws {
    let (user, me) = try await signedIn("ann@example.org", name: "Ann")
    let registered = try await events(AuthService.UserEvent.registered)
    XCTAssertEqual(registered.map(\.key), [user.id])
    XCTAssertEqual(registered.first?.keyVersion, 1)
    let born = try Auth_V1_UserRegistered(serializedBytes: registered[0].payload)
    XCTAssertEqual(born.userID, user.id)
    XCTAssertEqual(born.displayName, "Ann")
    XCTAssertEqual(born.roles, ["user"])

    let renamed = try await fx.auth.updateProfile(.with { $0.displayName = "  Ann Lee " }, metadata: me)
    XCTAssertEqual(renamed.displayName, "Ann Lee", "stored trimmed")
    XCTAssertEqual(renamed.id, user.id)
    let got = try await fx.auth.getMe(.init(), metadata: me)
    XCTAssertEqual(got.displayName, "Ann Lee")
    var renames = try await events(AuthService.UserEvent.renamed)
    XCTAssertEqual(renames.count, 1)
    XCTAssertEqual(renames[0].key, user.id)
    XCTAssertEqual(renames[0].keyVersion, 2)
    XCTAssertNotNil(renames[0].traceContext, "the call's traceparent travels with the event")
    let payload = try Auth_V1_UserRenamed(serializedBytes: renames[0].payload)
    XCTAssertEqual(payload.userID, user.id)
    XCTAssertEqual(payload.displayName, "Ann Lee")

    // The same name again: nothing changes, no event.
    _ = try await fx.auth.updateProfile(.with { $0.displayName = "Ann Lee" }, metadata: me)
    renames = try await events(AuthService.UserEvent.renamed)
    XCTAssertEqual(renames.count, 1)
    _ = try await fx.auth.updateProfile(.with { $0.displayName = "Ann" }, metadata: me)
    renames = try await events(AuthService.UserEvent.renamed)
    XCTAssertEqual(renames.map(\.keyVersion), [2, 3])

    // Invalid input: INVALID_ARGUMENT naming the field, nothing stored, nothing emitted.
    let before = try await events().count
    for bad in ["", "   ", "a\u{7}b", String(repeating: "y", count: 101)] {
      let error = await rpcError { _ = try await self.fx.auth.updateProfile(.with { $0.displayName = bad }, metadata: me) }
      XCTAssertEqual(error?.code, .invalidArgument, bad.debugDescription)
      let fields = try XCTUnwrap(try error?.unpackGoogleRPCStatus()?.details.first?.badRequest?.violations).map(\.field)
      XCTAssertEqual(Set(fields), ["display_name"])
    }
    let after = try await events().count
    XCTAssertEqual(after, before)
    let unchanged = try await fx.auth.getMe(.init(), metadata: me)
    XCTAssertEqual(unchanged.displayName, "Ann")

    // Anonymous callers and services have no profile to change.
    let anonymous = await statusCode { _ = try await self.fx.auth.updateProfile(.with { $0.displayName = "X" }) }
    XCTAssertEqual(anonymous, .unauthenticated)
  }

  /// The event is part of the rename's unit of work: when the transaction fails after the
  /// append, neither the new name nor the event exists.
  func testARenameThatRollsBackEmitsNothing() async throws {
    let (user, _) = try await signedIn("bo@example.org", name: "Bo")
    let base = fx.server.service
    let failing = AuthService(
      config: base.config, db: base.db, hasher: base.hasher, keyRing: base.keyRing, logger: base.logger,
      users: FailingAfterRename(), tokens: base.tokens, keys: base.keys, clients: base.clients)
    let renamesBefore = try await events(AuthService.UserEvent.renamed).count
    let principal = Principal(kind: .user, subject: user.id, roles: ["user"])
    let outcome = await statusCode {
      _ = try await asCaller(principal, requestID: "r-rollback") {
        try await failing.updateProfile(
          request: .with { $0.displayName = "Robert" }, context: inProcessContext(Auth_V1_AuthService.Method.UpdateProfile.descriptor))
      }
    }
    XCTAssertNotNil(outcome, "the failure reaches the caller")
    let renamesAfter = try await events(AuthService.UserEvent.renamed).count
    XCTAssertEqual(renamesAfter, renamesBefore, "a rolled-back rename emits nothing")
    let stored = try await base.db.read { uow in try await SQLUserRepository().find(id: user.id, in: uow) }
    XCTAssertEqual(stored?.displayName, "Bo")
    XCTAssertEqual(stored?.profileVersion, 1)
  }

  func testSetRolesEmitsRolesChangedOncePerChange() async throws {
    let (user, _) = try await signedIn("cy@example.org", name: "Cy")
    let admin = AuthFixture.bearer(try await fx.adminToken())
    _ = try await fx.auth.setRoles(
      .with {
        $0.userID = user.id; $0.roles = ["user", "author"]
      }, metadata: admin)
    _ = try await fx.auth.setRoles(
      .with {
        $0.userID = user.id; $0.roles = ["author", "user"]
      }, metadata: admin)
    let changes = try await events(AuthService.UserEvent.rolesChanged).filter { $0.key == user.id }
    XCTAssertEqual(changes.map(\.keyVersion), [2], "the same roles again are no change")
    let payload = try Auth_V1_UserRolesChanged(serializedBytes: changes[0].payload)
    XCTAssertEqual(payload.userID, user.id)
    XCTAssertEqual(payload.roles, ["author", "user"])
    // Renames and role changes share the profile version: it only grows.
    let me = AuthFixture.bearer(try await fx.login("cy@example.org").accessToken)
    _ = try await fx.auth.updateProfile(.with { $0.displayName = "Cyrus" }, metadata: me)
    let renames = try await events(AuthService.UserEvent.renamed).filter { $0.key == user.id }
    XCTAssertEqual(renames.map(\.keyVersion), [3])
    let profile = try await fx.auth.batchGetUsers(.with { $0.ids = [user.id] }, metadata: me).users
    XCTAssertEqual(profile.map(\.version), [3])
  }

  func testBatchGetUsersGivesPublicProfilesToServicesAndSignedInCallers() async throws {
    let (ann, me) = try await signedIn("ann@example.org", name: "Ann")
    let (bo, _) = try await signedIn("bo@example.org", name: "Bo")
    let answer = try await fx.auth.batchGetUsers(.with { $0.ids = [bo.id, "u-unknown", ann.id, bo.id] }, metadata: me)
    XCTAssertEqual(answer.users.map(\.id), [bo.id, ann.id], "in the order asked, each once, unknown ids left out")
    XCTAssertEqual(answer.users.map(\.displayName), ["Bo", "Ann"])
    XCTAssertEqual(answer.users.map(\.version), [1, 1])
    let bytes = try answer.serializedData()
    XCTAssertNil(bytes.range(of: Data("example.org".utf8)), "never an email")
    let empty = try await fx.auth.batchGetUsers(.init(), metadata: me)
    XCTAssertEqual(empty.users, [])

    // At most 1000 ids.
    let most = try await fx.auth.batchGetUsers(.with { $0.ids = [ann.id] + (1..<1000).map { "u-\($0)" } }, metadata: me)
    XCTAssertEqual(most.users.map(\.id), [ann.id])
    let tooMany = await statusCode {
      _ = try await self.fx.auth.batchGetUsers(.with { $0.ids = (0...1000).map { "u-\($0)" } }, metadata: me)
    }
    XCTAssertEqual(tooMany, .invalidArgument)

    // Anonymous: refused. A service of the suite: allowed. A third-party client for itself: refused.
    let anonymous = await statusCode { _ = try await self.fx.auth.batchGetUsers(.with { $0.ids = [ann.id] }) }
    XCTAssertEqual(anonymous, .unauthenticated)
    try await fx.server.service.ensureInternalClient(clientID: "quiz", name: "quiz", secret: "quiz-secret-0123456789")
    let service = try await fx.auth.clientCredentials(
      .with {
        $0.clientID = "quiz"; $0.clientSecret = "quiz-secret-0123456789"
      })
    let asService = try await fx.auth.batchGetUsers(.with { $0.ids = [ann.id] }, metadata: AuthFixture.bearer(service.accessToken))
    XCTAssertEqual(asService.users.map(\.displayName), ["Ann"])
    let admin = AuthFixture.bearer(try await fx.adminToken())
    let client = try await fx.auth.registerClient(
      .with {
        $0.name = "third party"; $0.grantTypes = ["client_credentials"]; $0.confidential = true
      }, metadata: admin)
    let clientToken = try await fx.auth.clientCredentials(
      .with {
        $0.clientID = client.clientID; $0.clientSecret = client.clientSecret
      })
    let asClient = await statusCode {
      _ = try await self.fx.auth.batchGetUsers(.with { $0.ids = [ann.id] }, metadata: AuthFixture.bearer(clientToken.accessToken))
    }
    XCTAssertEqual(asClient, .permissionDenied)
    // Services have no profile of their own to change.
    let serviceRename = await statusCode {
      _ = try await self.fx.auth.updateProfile(.with { $0.displayName = "Quiz" }, metadata: AuthFixture.bearer(service.accessToken))
    }
    XCTAssertEqual(serviceRename, .permissionDenied)
  }

  func testLogsNeverPairANameWithAnEmail() async throws {
    let (_, me) = try await signedIn("dee@example.org", name: "Dee")
    _ = try await fx.auth.updateProfile(.with { $0.displayName = "Deirdre Secretname" }, metadata: me)
    let lines = fx.log.rawLines().joined(separator: "\n")
    XCTAssertFalse(lines.contains("Deirdre Secretname"), "display names stay out of the log")
    XCTAssertTrue(lines.contains("user renamed"))
  }
}

/// The real repository, except that reading a user fails once a rename happened in the same
/// transaction (after the outbox append): the unit of work must roll back as a whole.
private struct FailingAfterRename: UserRepository {
  let base = SQLUserRepository()
  struct Injected: Error {}
  func insert(_ user: UserRecord, in uow: UnitOfWork) async throws { try await base.insert(user, in: uow) }
  func find(id: String, in uow: UnitOfWork) async throws -> UserRecord? {
    let row = try await uow.sql.raw("SELECT profile_version FROM users WHERE id = \(bind: id)").first()
    if try row?.decode(column: "profile_version", as: Int64.self) ?? 1 > 1 { throw Injected() }
    return try await base.find(id: id, in: uow)
  }
  func find(email: String, in uow: UnitOfWork) async throws -> UserRecord? { try await base.find(email: email, in: uow) }
  func list(after: (createdAtMs: Int64, id: String)?, limit: Int, in uow: UnitOfWork) async throws -> [UserRecord] {
    try await base.list(after: after, limit: limit, in: uow)
  }
  func setRoles(id: String, roles: Set<String>, nowMs: Int64, in uow: UnitOfWork) async throws -> ProfileChange {
    try await base.setRoles(id: id, roles: roles, nowMs: nowMs, in: uow)
  }
  func rename(id: String, displayName: String, nowMs: Int64, in uow: UnitOfWork) async throws -> ProfileChange {
    try await base.rename(id: id, displayName: displayName, nowMs: nowMs, in: uow)
  }
  func publicProfiles(ids: [String], in uow: UnitOfWork) async throws -> [PublicProfileRecord] {
    try await base.publicProfiles(ids: ids, in: uow)
  }
  func setPasswordHash(id: String, hash: String, nowMs: Int64, in uow: UnitOfWork) async throws {
    try await base.setPasswordHash(id: id, hash: hash, nowMs: nowMs, in: uow)
  }
  func recordLogin(id: String, failedLogins: Int, lockedUntilMs: Int64, in uow: UnitOfWork) async throws {
    try await base.recordLogin(id: id, failedLogins: failedLogins, lockedUntilMs: lockedUntilMs, in: uow)
  }
  func recordFailedLogin(id: String, maxFailures: Int, lockUntilMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    try await base.recordFailedLogin(id: id, maxFailures: maxFailures, lockUntilMs: lockUntilMs, in: uow)
  }
}

/// The profile statements on both dialects.
final class AuthProfileRepositoryTests: XCTestCase {
  func testRenameAndPublicProfilesOnBothDatabases() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: AuthMigrations.service, migrations: AuthMigrations.all).migrate(db)
      let users = SQLUserRepository()
      try await db.transaction { uow in
        for (id, name) in [("u-1", "One"), ("u-2", "Two")] {
          try await users.insert(
            UserRecord(
              id: id, email: "\(id)@example.com", displayName: name, passwordHash: "$scrypt$x", roles: ["user"], failedLogins: 0,
              lockedUntilMs: 0, createdAtMs: 1, updatedAtMs: 1), in: uow)
        }
      }
      let renamed = try await db.transaction { uow in try await users.rename(id: "u-1", displayName: "Uno", nowMs: 2, in: uow) }
      XCTAssertEqual(renamed, .changed(version: 2), "\(db.dialect)")
      let same = try await db.transaction { uow in try await users.rename(id: "u-1", displayName: "Uno", nowMs: 3, in: uow) }
      XCTAssertEqual(same, .unchanged)
      let missing = try await db.transaction { uow in try await users.rename(id: "u-9", displayName: "X", nowMs: 3, in: uow) }
      XCTAssertEqual(missing, .notFound)
      let profiles = try await db.read { uow in try await users.publicProfiles(ids: ["u-2", "u-1", "u-9", "u-1"], in: uow) }
      XCTAssertEqual(
        Set(profiles),
        [PublicProfileRecord(id: "u-1", displayName: "Uno", profileVersion: 2), PublicProfileRecord(id: "u-2", displayName: "Two", profileVersion: 1)])
      let none = try await db.read { uow in try await users.publicProfiles(ids: [], in: uow) }
      XCTAssertEqual(none, [])
    }
  }
}
