import Foundation
import QuizwireProtos
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// The quiz cache's three invalidations: tags (a write drops exactly what showed the quiz),
/// the list generation, and change events between replicas (two caches on one database:
/// PostgreSQL LISTEN/NOTIFY, SQLite in-process), including the flush when the LISTEN
/// connection is lost.
final class QuizCacheTests: XCTestCase {
  private func record(_ id: String, author: String = "alice") -> QuizRecord {
    QuizRecord(
      id: id, authorID: author, title: "t", description: "", tags: [], state: .published, questionTimeLimitSeconds: 0, questionCount: 0,
      etag: "e", createTimeMs: 1, updateTimeMs: 1)
  }

  private func quiz(_ id: String, etag: String = "e0") -> Quiz_V1_Quiz {
    .with {
      $0.id = id
      $0.etag = etag
      $0.title = "Quiz \(id)"
    }
  }

  private func page(_ ids: [String]) -> Quiz_V1_ListQuizzesResponse { .with { $0.quizzes = ids.map { self.quiz($0) } } }

  func testAWriteDropsExactlyWhatShowedTheQuizAndListChangesDropEveryPage() async throws {
    let cache = try QuizCache(notifier: nil, logger: TestDatabases.logger)
    for id in ["q1", "q2", "q3"] { cache.storeQuiz(self.quiz(id), id: id, authorID: "alice", mask: "*", ticket: cache.ticket()) }
    cache.storeList(self.page(["q1", "q2"]), key: "page-a", rows: [self.record("q1"), self.record("q2")], ticket: cache.ticket())
    cache.storeList(self.page(["q3"]), key: "page-b", rows: [self.record("q3", author: "bob")], ticket: cache.ticket())

    await cache.committed(QuizChange(kind: .changed, id: "q1", etag: "e1", authorID: "alice"))
    XCTAssertNil(cache.quiz(id: "q1", mask: "*"))
    XCTAssertNil(cache.list("page-a"), "the page showed q1")
    XCTAssertNotNil(cache.quiz(id: "q2", mask: "*"))
    XCTAssertNotNil(cache.list("page-b"))

    await cache.committed(QuizChange(kind: .published, id: "q9", etag: "e1", authorID: "carol"))
    XCTAssertNil(cache.list("page-b"), "a new quiz may belong on any page")
    XCTAssertNotNil(cache.quiz(id: "q3", mask: "*"), "single quizzes stay")

    cache.storeList(self.page(["q3"]), key: "page-b", rows: [self.record("q3", author: "bob")], ticket: cache.ticket())
    cache.invalidate(author: "bob")
    XCTAssertNil(cache.list("page-b"))
  }

  /// A cached quiz keeps its wire form; GetQuiz's serializer sends those bytes, which decode to
  /// the same quiz as serializing the message would give.
  func testACachedQuizIsServedAsTheBytesSerializedWhenItWasStored() throws {
    let cache = try QuizCache(notifier: nil, logger: TestDatabases.logger)
    var quiz = self.quiz("q1")
    quiz.questions = [
      .with {
        $0.id = "qq_1"; $0.prompt = "Which?";
        $0.choices = [
          .with {
            $0.id = "c1"; $0.text = "a"
          }
        ]
      }
    ]
    let stored = try XCTUnwrap(cache.storeQuiz(quiz, id: "q1", authorID: "alice", mask: "*", ticket: cache.ticket()))
    let expected: [UInt8] = try quiz.serializedBytes()
    XCTAssertEqual(stored, expected)
    let hit = try XCTUnwrap(cache.cachedQuiz(id: "q1", mask: "*"))
    XCTAssertEqual(hit.message, quiz)
    XCTAssertEqual(hit.serialized, expected)
    let sent: [UInt8] = try QuizReplySerializer().serialize(.cached(hit))
    XCTAssertEqual(sent, expected)
    let fresh: [UInt8] = try QuizReplySerializer().serialize(.message(quiz))
    XCTAssertEqual(try Quiz_V1_Quiz(serializedBytes: fresh), quiz)
  }

  func testAReadThatRacedAWriteIsNotCached() async throws {
    let cache = try QuizCache(notifier: nil, logger: TestDatabases.logger)
    let ticket = cache.ticket()  // the read starts …
    await cache.committed(QuizChange(kind: .changed, id: "q1", etag: "e1", authorID: "alice"))  // … a write lands …
    cache.storeQuiz(self.quiz("q1", etag: "e0"), id: "q1", authorID: "alice", mask: "*", ticket: ticket)  // … the old read returns
    XCTAssertNil(cache.quiz(id: "q1", mask: "*"))
  }

  /// What a write posts in its unit of work reaches the other replica only if it commits.
  func testAChangeReachesTheOtherReplicaOnlyWhenItsWriteCommits() async throws {
    try await TestDatabases.each { db in
      let notifierA = ChangeNotifier(database: db, logger: TestDatabases.logger)
      let notifierB = ChangeNotifier(database: db, logger: TestDatabases.logger)
      let cacheA = try QuizCache(notifier: notifierA, logger: TestDatabases.logger)
      let cacheB = try QuizCache(notifier: notifierB, logger: TestDatabases.logger)
      let tasks = [Task { await notifierB.run() }, Task { await cacheB.follow() }]
      defer { for task in tasks { task.cancel() } }
      let ready = await notifierB.waitUntilListening(QuizCache.channel)
      XCTAssertTrue(ready)
      cacheB.storeQuiz(self.quiz("q1"), id: "q1", authorID: "alice", mask: "*", ticket: cacheB.ticket())
      cacheB.storeQuiz(self.quiz("q2"), id: "q2", authorID: "alice", mask: "*", ticket: cacheB.ticket())
      struct Rollback: Error {}
      do {
        try await db.transaction { uow in
          try await cacheA.pending(QuizChange(kind: .changed, id: "q1", etag: "e1", authorID: "alice"), in: uow)
          throw Rollback()
        }
      } catch is Rollback {}
      try await db.transaction { uow in
        try await cacheA.pending(QuizChange(kind: .changed, id: "q2", etag: "e1", authorID: "alice"), in: uow)
      }
      let deadline = ContinuousClock.now + .seconds(5)
      while cacheB.quiz(id: "q2", mask: "*") != nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
      XCTAssertNil(cacheB.quiz(id: "q2", mask: "*"), "\(db.dialect): the committed change did not arrive")
      XCTAssertNotNil(cacheB.quiz(id: "q1", mask: "*"), "\(db.dialect): the rolled-back change arrived")
      notifierA.close()
      notifierB.close()
    }
  }

  /// Two replicas on one database: a write through A drops B's entry within 1 s, p99 over
  /// 200 writes.
  func testAWriteOnOneReplicaInvalidatesTheOtherWithinASecond() async throws {
    try await TestDatabases.each { db in
      let notifierA = ChangeNotifier(database: db, logger: TestDatabases.logger)
      let notifierB = ChangeNotifier(database: db, logger: TestDatabases.logger)
      let cacheA = try QuizCache(notifier: notifierA, logger: TestDatabases.logger)
      let cacheB = try QuizCache(notifier: notifierB, logger: TestDatabases.logger)
      let tasks = [
        Task { await notifierA.run() }, Task { await notifierB.run() }, Task { await cacheA.follow() }, Task { await cacheB.follow() },
      ]
      defer { for task in tasks { task.cancel() } }
      let ready = await notifierB.waitUntilListening(QuizCache.channel)
      XCTAssertTrue(ready)
      var latencies: [Duration] = []
      for write in 0..<200 {
        let id = "q\(write % 10)"
        cacheB.storeQuiz(self.quiz(id, etag: "e\(write)"), id: id, authorID: "alice", mask: "*", ticket: cacheB.ticket())
        let start = ContinuousClock.now
        try await db.transaction { uow in
          try await cacheA.pending(QuizChange(kind: .changed, id: id, etag: "e\(write + 1)", authorID: "alice"), in: uow)
        }
        while cacheB.quiz(id: id, mask: "*") != nil, ContinuousClock.now - start < .seconds(5) { try await Task.sleep(for: .milliseconds(1)) }
        latencies.append(ContinuousClock.now - start)
      }
      latencies.sort()
      let p99 = latencies[latencies.count * 99 / 100]
      print("\(db.dialect): cross-replica invalidation p50 \(latencies[latencies.count / 2]), p99 \(p99), max \(latencies.last!)")
      XCTAssertLessThan(p99, .seconds(1), "\(db.dialect)")
      notifierA.close()
      notifierB.close()
    }
  }

  /// Losing B's LISTEN connection flushes B's whole cache; after reconnecting, writes
  /// through A invalidate B again.
  func testLosingTheListenConnectionFlushesTheCacheAndResumes() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL to run it")
    }
    try await TestDatabases.withPostgres(url) { db in
      var timing = ChangeNotifier.Timing()
      timing.initialBackoff = .milliseconds(50)
      let notifierB = ChangeNotifier(database: db, logger: TestDatabases.logger, timing: timing)
      let writer = try QuizCache(notifier: ChangeNotifier(database: db, logger: TestDatabases.logger), logger: TestDatabases.logger)
      let cacheB = try QuizCache(notifier: notifierB, logger: TestDatabases.logger)
      let tasks = [Task { await notifierB.run() }, Task { await cacheB.follow() }]
      defer { for task in tasks { task.cancel() } }
      let ready = await notifierB.waitUntilListening(QuizCache.channel)
      XCTAssertTrue(ready)
      for id in ["q1", "q2", "q3"] { cacheB.storeQuiz(self.quiz(id), id: id, authorID: "alice", mask: "*", ticket: cacheB.ticket()) }
      _ = try await db.read { uow in
        try await uow.sql.raw(
          """
          SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'
          """
        ).all()
      }
      let deadline = ContinuousClock.now + .seconds(10)
      while cacheB.store.statistics.entries > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
      XCTAssertEqual(cacheB.store.statistics.entries, 0, "the cache was not flushed")
      XCTAssertGreaterThanOrEqual(cacheB.store.statistics.flushes, 1)
      // Back on a new connection: a write through the other replica invalidates B again.
      var resumed = false
      for attempt in 0..<100 where !resumed {
        // Only an invalidation counts, not the flush of the `.reset` sent on relistening.
        let flushes = cacheB.store.statistics.flushes
        cacheB.storeQuiz(self.quiz("q1"), id: "q1", authorID: "alice", mask: "*", ticket: cacheB.ticket())
        try await db.transaction { uow in
          try await writer.pending(QuizChange(kind: .changed, id: "q1", etag: "e\(attempt)", authorID: "alice"), in: uow)
        }
        try await Task.sleep(for: .milliseconds(100))
        resumed = cacheB.store.statistics.flushes == flushes && cacheB.quiz(id: "q1", mask: "*") == nil
      }
      XCTAssertTrue(resumed, "B stopped hearing A's writes")
      notifierB.close()
    }
  }
}
