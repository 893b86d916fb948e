import Foundation
import GRPCCore
import QuizwireProtos
import SQLKit
import ServiceKit
import Storage
import Synchronization
import TestSupport
import XCTest

@testable import QuizService

/// Authors' display names on quizzes, on SQLite and PostgreSQL: filled at creation, moved only
/// forward by renames (the version rule), backfilled in resumable batches.
final class QuizAuthorNameTests: XCTestCase {
  static let ann = AuthorProfile(id: "u-ann", displayName: "Ann", version: 3)

  func name(of id: String, in db: Database) async throws -> (String, Int64)? {
    let quiz = try await db.read { uow in try await QuizRepository().find(id: id, load: .row, in: uow) }
    return quiz.map { ($0.authorDisplayName, $0.authorNameVersion) }
  }

  func testCreateQuizTakesTheNameFromTheDirectoryOrFailsUnavailable() async throws {
    try await TestDatabases.each { db in
      try await QuizRepositoryTests.migrate(db)
      let tokens = try PageTokenCodec(secret: "test page token key 0123456789")
      let author = Principal(kind: .user, subject: Self.ann.id, roles: ["user"])
      let service = QuizService(db: db, tokens: tokens, authors: StaticAuthorDirectory([Self.ann]), logger: TestDatabases.logger)
      let created = try await asCaller(author) { try await service.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context()) }
      XCTAssertEqual(created.authorDisplayName, "Ann")
      let stored = try await self.name(of: created.id, in: db)
      XCTAssertEqual(stored?.0, "Ann")
      XCTAssertEqual(stored?.1, 3)
      let masked = try await asCaller(author) {
        try await service.getQuiz(
          request: .with {
            $0.id = created.id; $0.readMask = .with { $0.paths = ["id"] }
          }, context: context())
      }
      XCTAssertEqual(masked.authorDisplayName, "", "the read mask leaves it out")
      let named = try await asCaller(author) {
        try await service.getQuiz(
          request: .with {
            $0.id = created.id; $0.readMask = .with { $0.paths = ["author_display_name"] }
          }, context: context())
      }
      XCTAssertEqual(named.authorDisplayName, "Ann")

      // A rename applied between the profile read and the insert wins (quiz_authors).
      _ = try await db.transaction { uow in
        try await QuizRepository().applyAuthorRename(authorID: Self.ann.id, displayName: "Ann Newer", version: 4, in: uow)
      }
      let later = try await asCaller(author) { try await service.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context()) }
      XCTAssertEqual(later.authorDisplayName, "Ann Newer", "the directory's v3 never beats an applied v4")

      // Auth unreachable: UNAVAILABLE, nothing stored.
      let down = QuizService(db: db, tokens: tokens, authors: UnreachableDirectory(), logger: TestDatabases.logger)
      let count = try await db.read { uow in try await QuizRepository().count("SELECT COUNT(*) AS total FROM quizzes", in: uow) }
      let error = await rpcError {
        _ = try await asCaller(author) { try await down.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context()) }
      }
      XCTAssertEqual(error?.code, .unavailable)
      let after = try await db.read { uow in try await QuizRepository().count("SELECT COUNT(*) AS total FROM quizzes", in: uow) }
      XCTAssertEqual(after, count)

      // An author auth doesn't know: an empty name, version 0 (a later rename fills it).
      let stranger = Principal(kind: .user, subject: "u-unknown", roles: ["user"])
      let orphan = try await asCaller(stranger) { try await service.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context()) }
      XCTAssertEqual(orphan.authorDisplayName, "")
      let orphanName = try await self.name(of: orphan.id, in: db)
      XCTAssertEqual(orphanName?.1, 0)
    }
  }

  func testARenameAppliesOnlyOverAnOlderName() async throws {
    try await TestDatabases.each { db in
      try await QuizRepositoryTests.migrate(db)
      let repo = QuizRepository()
      var named = QuizRepositoryTests.record(1, author: "u-a")
      named.authorDisplayName = "A2"
      named.authorNameVersion = 2
      let unnamed = QuizRepositoryTests.record(2, author: "u-a")
      let other = QuizRepositoryTests.record(3, author: "u-b")
      try await db.transaction { uow in
        for quiz in [named, unnamed, other] { try await repo.insert(quiz, in: uow) }
      }
      func apply(_ name: String, _ version: Int64) async throws -> Int {
        try await db.transaction { uow in try await repo.applyAuthorRename(authorID: "u-a", displayName: name, version: version, in: uow) }
      }
      let first = try await apply("A3", 3)
      XCTAssertEqual(first, 2, "both of u-a's quizzes")
      let replay = try await apply("A3", 3)
      XCTAssertEqual(replay, 0, "a repeated event changes nothing")
      let stale = try await apply("A2 again", 2)
      XCTAssertEqual(stale, 0, "an older event never overwrites a newer name")
      let stale1 = try await apply("A1", 1)
      XCTAssertEqual(stale1, 0)
      for id in [named.id, unnamed.id] {
        let stored = try await self.name(of: id, in: db)
        XCTAssertEqual(stored?.0, "A3")
        XCTAssertEqual(stored?.1, 3)
      }
      let untouched = try await self.name(of: other.id, in: db)
      XCTAssertEqual(untouched?.0, "")
      XCTAssertEqual(untouched?.1, 0, "other authors' quizzes are left alone")
      let newest = try await db.transaction { uow in
        try await repo.newestAuthorName(AuthorProfile(id: "u-a", displayName: "A2", version: 2), in: uow)
      }
      XCTAssertEqual(newest, AuthorProfile(id: "u-a", displayName: "A3", version: 3))
      // Content writes leave the name alone (UpdateQuiz doesn't write it).
      var edited = try await db.read { uow in try await repo.find(id: unnamed.id, in: uow) }!
      let etag = edited.etag
      edited.title = "Edited"
      edited.touch(nowMs: edited.updateTimeMs + 1)
      _ = try await db.transaction { uow in
        try await repo.update(edited, expectedEtag: etag, replaceTags: false, replaceQuestions: false, in: uow)
      }
      let kept = try await self.name(of: unnamed.id, in: db)
      XCTAssertEqual(kept?.0, "A3")
    }
  }

  func testBackfillFillsUnnamedQuizzesInResumableBatches() async throws {
    try await TestDatabases.each { db in
      try await QuizRepositoryTests.migrate(db)
      let repo = QuizRepository()
      let authors = ["u-1", "u-2", "u-3", "u-gone"]
      var quizzes = (0..<250).map { QuizRepositoryTests.record($0, author: authors[$0 % 4], questions: 0) }
      // Renamed already (a user.renamed consumed before the backfill reached it): version 9.
      quizzes[1].authorDisplayName = "Renamed"
      quizzes[1].authorNameVersion = 9
      try await db.transaction { uow in
        for quiz in quizzes { try await repo.insert(quiz, in: uow) }
      }
      let directory = CountingDirectory(
        profiles: [
          AuthorProfile(id: "u-1", displayName: "One", version: 1), AuthorProfile(id: "u-2", displayName: "Two", version: 4),
          AuthorProfile(id: "u-3", displayName: "Three", version: 2),
        ], failOnCall: 2)
      let backfill = AuthorNameBackfill(directory: directory, batchSize: 100)
      let migrator = try Migrator(service: QuizMigrations.service, migrations: QuizMigrations.all, dataMigrations: [backfill.migration])

      // The second batch's lookup fails (auth down): the first batch stays committed.
      do {
        try await migrator.runDataMigration(backfill.migration, db)
        XCTFail("the failing lookup ends the run")
      } catch {}
      let firstRun = try await self.progress(db)
      XCTAssertEqual(firstRun.batches, 1)
      XCTAssertFalse(firstRun.done)
      let filled = try await self.filledCount(db)
      XCTAssertEqual(filled, 75, "the first 100 quizzes less u-gone's 25 (and the renamed one)")

      // Resumed: goes on after the first batch, never asking for it again.
      try await migrator.runDataMigration(backfill.migration, db)
      XCTAssertEqual(directory.calls, 4, "1 ok + 1 failed, then the remaining 2 batches")
      let final = try await self.progress(db)
      XCTAssertTrue(final.done)
      let all = try await db.read { uow in try await repo.find(ids: quizzes.map(\.id), load: .row, in: uow) }
      for quiz in all {
        switch quiz.authorID {
        case "u-gone":
          XCTAssertEqual(quiz.authorDisplayName, "")
          XCTAssertEqual(quiz.authorNameVersion, 0)
        case "u-2" where quiz.id == quizzes[1].id:
          XCTAssertEqual(quiz.authorDisplayName, "Renamed", "a newer name is never overwritten")
          XCTAssertEqual(quiz.authorNameVersion, 9)
        default:
          let expected = ["u-1": ("One", Int64(1)), "u-2": ("Two", 4), "u-3": ("Three", 2)][quiz.authorID]!
          XCTAssertEqual(quiz.authorDisplayName, expected.0, quiz.id)
          XCTAssertEqual(quiz.authorNameVersion, expected.1)
        }
      }
      // Finished: a new run does nothing.
      try await migrator.runDataMigration(backfill.migration, db)
      XCTAssertEqual(directory.calls, 4)
    }
  }

  func progress(_ db: Database) async throws -> (batches: Int, done: Bool) {
    try await db.read { uow in
      let row = try await uow.sql.raw(
        "SELECT batches, done_at_ms FROM data_migrations WHERE service = 'quiz' AND name = \(bind: AuthorNameBackfill.name)"
      ).first()
      return (try row?.decode(column: "batches", as: Int.self) ?? 0, try row.map { try !$0.decodeNil(column: "done_at_ms") } ?? false)
    }
  }

  func filledCount(_ db: Database) async throws -> Int {
    try await db.read { uow in
      try await QuizRepository().count("SELECT COUNT(*) AS total FROM quizzes WHERE author_name_version BETWEEN 1 AND 8", in: uow)
    }
  }
}

/// A directory that can't be reached.
struct UnreachableDirectory: AuthorDirectory {
  func profiles(ids: [String]) async throws -> [String: AuthorProfile] {
    throw RPCError(code: .unavailable, message: "connection refused")
  }
}

/// A fixed directory that counts its calls and fails call number `failOnCall` (1-based).
final class CountingDirectory: AuthorDirectory {
  let base: StaticAuthorDirectory
  let failOnCall: Int?
  private let count = Mutex(0)
  init(profiles: [AuthorProfile], failOnCall: Int? = nil) {
    self.base = StaticAuthorDirectory(profiles)
    self.failOnCall = failOnCall
  }
  var calls: Int { self.count.withLock { $0 } }
  func profiles(ids: [String]) async throws -> [String: AuthorProfile] {
    let n = self.count.withLock { count -> Int in
      count += 1
      return count
    }
    if n == self.failOnCall { throw RPCError(code: .unavailable, message: "auth is down") }
    return try await self.base.profiles(ids: ids)
  }
}
