import Foundation
import Logging
import SQLKit
import ServiceKit
import Storage
import TestSupport
import XCTest

@testable import AuthService

/// `auth.purge_expired_tokens`: expired refresh tokens go, live ones stay; authorization codes go
/// a day after they expire (used or not); a full batch asks for another run at once.
final class AuthJobsTests: XCTestCase {
  static let now: Int64 = 10 * 24 * 3600 * 1000

  func testThePurgeDeletesExpiredTokensAndOldCodesOnly() async throws {
    try await TestDatabases.each { db in
      try await Migrator(service: AuthMigrations.service, migrations: AuthMigrations.all).migrate(db)
      let repository = SQLTokenRepository()
      let now = Self.now
      try await db.transaction { uow in
        try await uow.sql.raw(
          """
          INSERT INTO users (id, email, display_name, password_hash, roles, created_at_ms, updated_at_ms)
          VALUES ('u1', 'a@example.com', 'A', 'x', 'user', 0, 0)
          """
        ).run()
        try await uow.sql.raw(
          """
          INSERT INTO oauth_clients (client_id, name, redirect_uris, grant_types, scopes, created_at_ms)
          VALUES ('c1', 'C', 'https://c.example/cb', 'authorization_code', 'openid', 0)
          """
        ).run()
        for (id, expires) in [("expired1", now - 1), ("expired2", now - 3_600_000), ("expired3", now), ("live", now + 1)] {
          try await repository.insert(
            RefreshTokenRecord(
              id: id, tokenHash: "h-\(id)", familyID: "f", userID: "u1", clientID: nil, scope: "", expiresAtMs: expires, usedAtMs: nil,
              revokedAtMs: nil, createdAtMs: 0), in: uow)
        }
        let day = AuthJobs.codeReplayWindowMs
        for (hash, expires, used) in [
          ("old-used", now - day - 1, true), ("old", now - day, false), ("recent-used", now - 1000, true), ("live", now + 60_000, false),
        ] {
          try await repository.insert(
            AuthCodeRecord(
              codeHash: hash, clientID: "c1", userID: "u1", redirectURI: "https://c.example/cb", codeChallenge: "x", scope: "",
              expiresAtMs: expires, usedAtMs: used ? expires - 30_000 : nil, familyID: used ? "f" : nil, createdAtMs: 0), in: uow)
        }
      }
      let handlers = AuthJobs.handlers(tokens: repository, now: { now }, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, batch: 2)
      try await self.runOnce(handlers[0], db)

      let tokens = try await db.read { uow in
        try await uow.sql.raw("SELECT id FROM refresh_tokens ORDER BY id").all().map { try $0.decode(column: "id", as: String.self) }
      }
      // A batch of 2: one expired token is left for the follow-up run the full batch enqueued.
      XCTAssertEqual(tokens.count, 2)
      XCTAssertTrue(tokens.contains("live"))
      let followUp = try await db.read { uow in try await JobQueue.counts(in: uow) }
      XCTAssertEqual(followUp.first?.due, 1, "a full batch enqueues another run now")

      try await self.runOnce(handlers[0], db)
      let after = try await db.read { uow in
        try await uow.sql.raw("SELECT id FROM refresh_tokens").all().map { try $0.decode(column: "id", as: String.self) }
      }
      XCTAssertEqual(after, ["live"])
      let codes = try await db.read { uow in
        try await uow.sql.raw("SELECT code_hash FROM auth_codes ORDER BY code_hash").all().map { try $0.decode(column: "code_hash", as: String.self) }
      }
      XCTAssertEqual(codes, ["live", "recent-used"], "a used code stays for a day so that replaying it still revokes its family")
    }
  }

  func testThePurgeIsAnHourlyRecurringJobOfTheAuthModule() {
    XCTAssertEqual(AuthJobs.purge.kind, AuthJobs.purgeKind)
    XCTAssertEqual(AuthJobs.purge.every, .seconds(3600))
    XCTAssertEqual(AuthJobs.purge.nextSlot(afterMs: 3_600_000 * 5 + 1).runAtMs, 3_600_000 * 6)
  }

  /// Claims the next due purge job and runs it the way the worker does.
  private func runOnce(_ handler: JobHandler, _ db: Database) async throws {
    if try await db.read({ uow in try await JobQueue.counts(in: uow) }).isEmpty {
      try await db.transaction { uow in try await JobQueue.enqueue(kind: AuthJobs.purgeKind, in: uow) }
    }
    let jobs = try await JobQueue.claim(worker: "test", kinds: [AuthJobs.purgeKind], limit: 1, visibility: .seconds(30), in: db)
    XCTAssertEqual(jobs.count, 1)
    try await db.transaction { uow in
      try await JobQueue.complete(jobs[0], in: uow)
      try await handler.run(jobs[0], uow)
    }
  }
}
