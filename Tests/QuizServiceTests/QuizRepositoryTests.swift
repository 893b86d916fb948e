import Foundation
import QuizwireProtos
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// The repository, migrations, outbox and seed on SQLite and PostgreSQL
/// (`QUIZWIRE_TEST_POSTGRES_URL`; required under `QUIZWIRE_REQUIRE_ALL=1`).
final class QuizRepositoryTests: XCTestCase {
  static func migrate(_ db: Database, seed: Bool = false) async throws {
    _ = try await Migrator(service: QuizMigrations.service, migrations: QuizMigrations.all, dataMigrations: seed ? [QuizSeed.demoQuiz] : [])
      .migrate(db)
  }

  static func record(_ n: Int, author: String = "u-1", state: QuizState = .draft, questions: Int = 2, createMs: Int64? = nil) -> QuizRecord {
    let created = createMs ?? (1_700_000_000_000 + Int64(n))
    var quiz = QuizRecord(
      id: String(format: "qz_%06d", n), authorID: author, title: "Quiz \(n)", description: "d", tags: ["swift", "t\(n % 3)"], state: state,
      questionTimeLimitSeconds: 30, questionCount: questions, etag: "", createTimeMs: created, updateTimeMs: created,
      questions: (0..<questions).map { QuizRules.normalized(Sample.question($0), id: String(format: "qq_%06d_%d", n, $0)) })
    quiz.etag = QuizEtag.initial(quiz)
    return quiz
  }

  func testAQuizRoundTripsAndAWriteWithAStaleEtagChangesNothing() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let repo = QuizRepository()
      let quiz = Self.record(1, questions: 3)
      try await db.transaction { uow in try await repo.insert(quiz, in: uow) }
      let loaded = try await db.read { uow in try await repo.find(id: quiz.id, in: uow) }
      XCTAssertEqual(loaded, quiz, "\(db.dialect)")
      XCTAssertEqual(loaded?.questions?.map(\.id), quiz.questions?.map(\.id))
      XCTAssertEqual(loaded?.questions?.first?.answerKey.correctChoiceIds, ["a"], "answer keys are stored with the question")

      var changed = quiz
      changed.title = "Renamed"
      changed.tags = ["other"]
      changed.questions = Array(quiz.questions!.prefix(1))
      changed.touch(nowMs: quiz.updateTimeMs)
      XCTAssertNotEqual(changed.etag, quiz.etag)
      XCTAssertGreaterThan(changed.updateTimeMs, quiz.updateTimeMs, "update time strictly increases")
      let stale = try await db.transaction { uow in
        try await repo.update(changed, expectedEtag: "not-the-etag", replaceTags: true, replaceQuestions: true, in: uow)
      }
      XCTAssertFalse(stale)
      let unchanged = try await db.read { uow in try await repo.find(id: quiz.id, in: uow) }
      XCTAssertEqual(unchanged, quiz, "a refused write leaves row, tags and questions alone")
      let written = try await db.transaction { uow in
        try await repo.update(changed, expectedEtag: quiz.etag, replaceTags: true, replaceQuestions: true, in: uow)
      }
      XCTAssertTrue(written)
      let after = try await db.read { uow in try await repo.find(id: quiz.id, in: uow) }
      XCTAssertEqual(after, changed)
      XCTAssertEqual(after?.questionCount, 1)

      let many = try await db.read { uow in try await repo.find(ids: [quiz.id, "qz_missing"], load: .row, in: uow) }
      XCTAssertEqual(many.map(\.id), [quiz.id])
      XCTAssertNil(many.first?.questions, "questions not loaded when not asked for")
    }
  }

  func testAPageWithQuestionsLoadsInThreeQueriesWhateverItsSize() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let repo = QuizRepository()
      try await db.transaction { uow in
        for n in 0..<60 { try await repo.insert(Self.record(n, state: .published, questions: 3), in: uow) }
      }
      let tokens = try PageTokenCodec(secret: "test page token key 0123456789")
      for size in [1, 5, 20, 50] {
        let query = try ListQuery(
          filter: "", orderBy: "", pageSize: Int32(size), pageToken: "", offset: 0, readMask: [], scope: "anonymous", tokens: tokens)
        let (page, queries) = try await db.read { uow in
          let (counted, counter) = uow.counted()
          let rows = try await repo.list(tail: QuizQuerySQL.pageTail(query, visibility: .publishedOnly), load: .everything, in: counted)
          return (rows, counter.count)
        }
        XCTAssertEqual(page.count, size + 1, "a page and one more row to know whether another follows")
        XCTAssertEqual(queries, 3, "quizzes, tags, questions — page size \(size), \(db.dialect)")
        XCTAssertTrue(page.allSatisfy { $0.questions?.count == 3 && $0.tags.count == 2 })
      }
      // read_mask=id,title: the rows only.
      let masked = try ListQuery(
        filter: "", orderBy: "", pageSize: 20, pageToken: "", offset: 0, readMask: ["id,title"], scope: "anonymous", tokens: tokens)
      let queries = try await db.read { uow in
        let (counted, counter) = uow.counted()
        _ = try await repo.list(
          tail: QuizQuerySQL.pageTail(masked, visibility: .publishedOnly),
          load: QuizLoad(tags: masked.readMask.needsTags, questions: masked.readMask.needsQuestions), in: counted)
        return counter.executed
      }
      XCTAssertEqual(queries.count, 1, "\(queries)")
      XCTAssertFalse(queries.joined().contains("quiz_questions"))
    }
  }

  func testOutboxEventsCommitWithTheirChangeAndRollBackWithIt() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      let repo = QuizRepository()
      struct Boom: Error {}
      do {
        try await db.transaction { uow in
          try await repo.insert(Self.record(1), in: uow)
          try await Outbox.append(type: "quiz.changed", key: "qz_000001", keyVersion: 1, payload: Data("{}".utf8), in: uow)
          throw Boom()
        }
        XCTFail("the transaction should have failed")
      } catch is Boom {}
      var events = try await db.read { uow in try await Outbox.read(after: 0, limit: 10, in: uow) }
      XCTAssertTrue(events.isEmpty, "rolled back with the change")
      try await db.transaction { uow in
        try await repo.insert(Self.record(2), in: uow)
        try await Outbox.append(type: "quiz.changed", key: "qz_000002", keyVersion: 7, payload: Data("{\"a\":1}".utf8), traceContext: "00-x", in: uow)
        try await Outbox.append(type: "quiz.published", key: "qz_000002", keyVersion: 7, payload: Data(), in: uow)
      }
      events = try await db.read { uow in try await Outbox.read(after: 0, limit: 10, in: uow) }
      XCTAssertEqual(events.map(\.type), ["quiz.changed", "quiz.published"])
      XCTAssertEqual(events.first?.traceContext, "00-x")
      XCTAssertEqual(events.first?.payload, Data("{\"a\":1}".utf8))
      XCTAssertLessThan(events[0].offset, events[1].offset)
      let later = try await db.read { uow in try await Outbox.read(after: events[0].offset, limit: 10, in: uow) }
      XCTAssertEqual(later.map(\.offset), [events[1].offset])
    }
  }

  func testTheDemoQuizIsSeededOnceAndOnlyIntoAnEmptyDatabase() async throws {
    try await TestDatabases.each { db in
      try await Self.migrate(db, seed: true)
      try await Self.migrate(db, seed: true)
      let repo = QuizRepository()
      let demo = try await db.read { uow in try await repo.find(id: QuizSeed.demoQuizID, in: uow) }
      XCTAssertEqual(demo?.title, "Swift concurrency basics")
      XCTAssertEqual(demo?.state, .published)
      XCTAssertEqual(demo?.questions?.count, 5)
      XCTAssertTrue(demo?.questions?.allSatisfy { QuizRules.questionViolations($0).isEmpty } ?? false, "every demo question is valid")
      struct Row: Decodable { var n: Int }
      let count = try await db.read { uow in try await uow.sql.raw("SELECT COUNT(*) AS n FROM quizzes").first(decoding: Row.self)?.n }
      XCTAssertEqual(count, 1)
    }
    // A database that has content already never gets the demo.
    try await TestDatabases.each { db in
      try await Self.migrate(db)
      try await db.transaction { uow in try await QuizRepository().insert(Self.record(1), in: uow) }
      try await Self.migrate(db, seed: true)
      let demo = try await db.read { uow in try await QuizRepository().find(id: QuizSeed.demoQuizID, in: uow) }
      XCTAssertNil(demo)
    }
  }
}
