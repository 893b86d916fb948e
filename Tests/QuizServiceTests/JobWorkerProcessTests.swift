import Foundation
import QuizService
import QuizwireProtos
import SQLKit
import Storage
import TestSupport
import XCTest

/// Issue 13's must-show: three `quizwire jobs work quiz` processes on one PostgreSQL process
/// 5,000 `quiz.recompute_stats` jobs, one of them `kill -9`ed while it holds claims: every job's
/// effect happens exactly once (the recomputation counters add up to 5,000), every job is gone
/// and none is dead.
final class JobWorkerProcessTests: XCTestCase {
  static let jobs = 5000
  static let quizzes = 100

  func testThreeWorkerProcessesRunEveryJobExactlyOnceThoughOneIsKilled() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { return XCTFail("QUIZWIRE_TEST_POSTGRES_URL is required (QUIZWIRE_REQUIRE_ALL=1)") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL to run it")
    }
    _ = try ServedProcess.quizwireExecutable()
    try await TestDatabases.withPostgres(url, poolSize: 4) { db in
      guard case .postgres(let databaseURL, _) = db.location else { return XCTFail("not PostgreSQL") }
      try await self.run(db, databaseURL: databaseURL)
    }
  }

  private func run(_ db: Database, databaseURL: String) async throws {
    try await Migrator(service: QuizModule.name, migrations: QuizModule.migrations, dataMigrations: QuizModule.dataMigrations).migrate(db)
    let ids = (0..<Self.quizzes).map { "qz_jobs_\($0)" }
    try await db.transaction { uow in
      for id in ids { try await QuizRepository().insert(Self.quiz(id), in: uow) }
      for i in 0..<Self.jobs { try await QuizJobs.enqueueRecompute(quizID: ids[i % ids.count], in: uow) }
    }

    // The quiz module is built as `serve` builds it, which wants the auth service (authors'
    // names): one auth process on SQLite, with "quiz" as its internal client.
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let auth = try ServedProcess("auth", settings: ["--data-dir", dir, "--internal-clients", "quiz"])
    defer { auth.stop() }
    guard let authAddress = try auth.addresses()["framed"] else { return XCTFail("auth printed no framed address") }

    let environment = [
      "QUIZWIRE_DATABASE_URL": databaseURL, "QUIZWIRE_QUIZ_PAGE_TOKEN_KEY": "the job worker test's page-token key",
      "QUIZWIRE_LOG_LEVEL": "warning", "QUIZWIRE_CLIENT_SECRET_FILE": dir + "/quiz-client.secret",
    ]
    let arguments = [
      "jobs", "work", "quiz", "--jobs-visibility", "2", "--jobs-concurrency", "2", "--pool-size", "4", "--auth-target", authAddress,
    ]
    let workers = try (0..<3).map { _ in try ServedProcess(arguments: arguments, environment: environment) }
    defer { for worker in workers { worker.stop() } }

    let start = ContinuousClock.now
    var killed: (done: Int, claims: Int)?
    while true {
      let remaining = try await Self.count("SELECT COUNT(*) AS n FROM jobs", db)
      if remaining == 0 { break }
      // Mid-run, at a moment it holds claims (its batch and the job it is running).
      if killed == nil, remaining <= Self.jobs * 7 / 10 {
        let claims = try await Self.count(
          "SELECT COUNT(*) AS n FROM jobs WHERE locked_by LIKE \(bind: "%/\(workers[0].pid)/%") AND locked_until_ms > \(bind: JobQueue.currentMs())",
          db)
        if claims > 0 {
          workers[0].sigkill()
          killed = (Self.jobs - remaining, claims)
        }
      }
      guard ContinuousClock.now - start < .seconds(50) else {
        return XCTFail("\(remaining) jobs left after 50 s; worker output: \(workers.map { $0.lines.suffix(3) })")
      }
      for worker in workers.dropFirst() where !worker.isRunning {
        return XCTFail("a worker exited: \(worker.lines.suffix(5))")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    let elapsed = ContinuousClock.now - start
    let stopping = ContinuousClock.now
    for worker in workers.dropFirst() { worker.stop() }
    let stopTime = ContinuousClock.now - stopping

    XCTAssertNotNil(killed, "worker 0 was never caught holding claims")
    XCTAssertEqual(workers[1].exitStatus, 0, "SIGTERM stops a worker cleanly")
    XCTAssertEqual(workers[2].exitStatus, 0)
    let sum = try await Self.count("SELECT CAST(COALESCE(SUM(recomputations), 0) AS BIGINT) AS n FROM quiz_statistics", db)
    XCTAssertEqual(sum, Self.jobs, "each job's effect exactly once")
    let rows = try await Self.count("SELECT COUNT(*) AS n FROM quiz_statistics WHERE recomputations = \(bind: Self.jobs / Self.quizzes)", db)
    XCTAssertEqual(rows, Self.quizzes)
    let points = try await Self.count("SELECT COUNT(*) AS n FROM quiz_statistics WHERE question_count = 2 AND total_points = 7", db)
    XCTAssertEqual(points, Self.quizzes)
    let left = try await Self.count("SELECT COUNT(*) AS n FROM jobs", db)
    XCTAssertEqual(left, 0, "every job gone, none dead")
    print(
      "jobs: \(Self.jobs) by 3 worker processes in \(elapsed); worker 0 killed after \(killed?.done ?? -1) done, holding \(killed?.claims ?? -1) claims; others stopped in \(stopTime)"
    )
  }

  static func count(_ query: SQLQueryString, _ db: Database) async throws -> Int {
    try await db.read { uow in Int(try await uow.sql.raw(query).first()!.decode(column: "n", as: Int64.self)) }
  }

  static func quiz(_ id: String) -> QuizRecord {
    let questions = [3, 4].enumerated().map { index, points in
      Quiz_V1_Question.with {
        $0.id = "\(id)_q\(index)"
        $0.kind = .singleChoice
        $0.prompt = "Question \(index)?"
        $0.points = Int32(points)
        $0.choices = [
          .with {
            $0.id = "a"; $0.text = "Yes"
          },
          .with {
            $0.id = "b"; $0.text = "No"
          },
        ]
        $0.answerKey = .with { $0.correctChoiceIds = ["a"] }
      }
    }
    let now = JobQueue.currentMs()
    return QuizRecord(
      id: id, authorID: "u_jobs", title: "Quiz \(id)", description: "", tags: [], state: .draft, questionTimeLimitSeconds: 30,
      questionCount: questions.count, etag: "e1", createTimeMs: now, updateTimeMs: now, questions: questions)
  }
}
