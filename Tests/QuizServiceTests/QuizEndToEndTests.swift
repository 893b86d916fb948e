import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import QuizwireProtos
import SQLKit
import ServiceKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// The quiz module served behind a real auth service, called over the framed wire and over
/// gRPC/HTTP2: the contract as outside clients see it.
final class QuizEndToEndTests: XCTestCase {
  func testCreateGetPublishListOverBothTransports() async throws {
    let harness = try await QuizHarness.start()
    do {
      let author = try await harness.user("author@example.com")
      // The demo quiz was seeded on first start.
      let demo = try await harness.quiz.getQuiz(.with { $0.id = QuizSeed.demoQuizID })
      XCTAssertEqual(demo.title, "Swift concurrency basics")
      XCTAssertEqual(demo.questions.count, 5)
      XCTAssertFalse(demo.questions.contains { $0.hasAnswerKey }, "anonymous: no answer keys")

      // Framed wire: create, read back, publish, list.
      let created = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz("Framed quiz", questions: 2) }, metadata: author.metadata)
      XCTAssertEqual(created.authorID, author.id)
      XCTAssertEqual(created.state, .draft)
      XCTAssertFalse(created.etag.isEmpty)
      XCTAssertTrue(created.questions.allSatisfy { $0.id.hasPrefix("qq_") && $0.hasAnswerKey })
      let draftCode = await statusCode { _ = try await harness.quiz.getQuiz(.with { $0.id = created.id }) }
      XCTAssertEqual(draftCode, .notFound, "someone else's draft does not exist for them")
      let published = try await harness.quiz.publishQuiz(
        .with {
          $0.id = created.id
          $0.etag = created.etag
        }, metadata: author.metadata)
      XCTAssertEqual(published.state, .published)
      let anonymous = try await harness.quiz.getQuiz(.with { $0.id = created.id })
      XCTAssertEqual(anonymous.etag, published.etag)
      // Served from the cache the second time; a write drops it at once on this replica.
      let cached = try await harness.quiz.getQuiz(.with { $0.id = created.id })
      XCTAssertEqual(cached, anonymous)
      let filtered = Quiz_V1_ListQuizzesRequest.with { $0.filter = #"title : "renamed""# }
      let before = try await harness.quiz.listQuizzes(filtered)
      XCTAssertTrue(before.quizzes.isEmpty)
      _ = try await harness.quiz.listQuizzes(filtered)  // now cached
      let renamed = try await harness.quiz.updateQuiz(
        .with {
          $0.quiz = .with {
            $0.id = created.id
            $0.title = "Renamed framed quiz"
          }
          $0.updateMask = .with { $0.paths = ["title"] }
        }, metadata: author.metadata)
      let fresh = try await harness.quiz.getQuiz(.with { $0.id = created.id })
      XCTAssertEqual(fresh.title, "Renamed framed quiz")
      XCTAssertEqual(fresh.etag, renamed.etag)
      // A new title may put the quiz on pages it wasn't on: cached list pages are dropped.
      let after = try await harness.quiz.listQuizzes(filtered)
      XCTAssertEqual(after.quizzes.map(\.id), [created.id])
      let metrics = try await Self.metrics(harness)
      XCTAssertTrue(metrics.contains { $0.hasPrefix("cache_hits_total{cache=\"quiz\"} ") && !$0.hasSuffix(" 0") }, "\(metrics)")
      let page = try await harness.quiz.listQuizzes(
        .with {
          $0.pageSize = 10
          $0.includeTotal = true
        })
      XCTAssertEqual(Set(page.quizzes.map(\.id)), [created.id, QuizSeed.demoQuizID])
      XCTAssertEqual(page.totalSize, 2)

      // A stale etag over the wire: ABORTED with ErrorInfo ETAG_MISMATCH.
      let stale = await rpcError {
        _ = try await harness.quiz.archiveQuiz(
          .with {
            $0.id = created.id
            $0.etag = created.etag
          }, metadata: author.metadata)
      }
      XCTAssertEqual(stale?.code, .aborted)
      XCTAssertEqual(stale.flatMap(QuizServiceTests.errorInfoReason), "ETAG_MISMATCH")

      // A field violation names its full path.
      var bad = Sample.quiz(questions: 4)
      bad.questions[3].choices[1].text = "bad\u{0}text"
      let invalid = await rpcError { _ = try await harness.quiz.createQuiz(.with { $0.quiz = bad }, metadata: author.metadata) }
      XCTAssertEqual(invalid?.code, .invalidArgument)
      let fields = try invalid?.unpackGoogleRPCStatus()?.details.compactMap(\.badRequest).flatMap { $0.violations.map(\.field) }
      XCTAssertEqual(fields, ["quiz.questions[3].choices[1].text"])

      // gRPC/HTTP2: the same service, the same answers.
      let grpc = try await harness.quizHost.addresses().grpc
      let parts = grpc.split(separator: ":")
      let transport = try HTTP2ClientTransport.Posix(
        target: .ipv4(address: String(parts[0]), port: Int(parts[1])!), transportSecurity: .plaintext)
      try await withGRPCClient(transport: transport) { client in
        let quiz = Quiz_V1_QuizService.Client(wrapping: client)
        let viaH2 = try await quiz.createQuiz(.with { $0.quiz = Sample.quiz("HTTP/2 quiz") }, metadata: author.metadata)
        let read = try await quiz.getQuiz(.with { $0.id = viaH2.id }, metadata: author.metadata)
        XCTAssertEqual(read.etag, viaH2.etag)
        _ = try await quiz.publishQuiz(.with { $0.id = viaH2.id }, metadata: author.metadata)
        let list = try await quiz.listQuizzes(.with { $0.pageSize = 1 })
        XCTAssertEqual(list.quizzes.count, 1)
        XCTAssertFalse(list.nextPageToken.isEmpty)
        let next = try await quiz.listQuizzes(
          .with {
            $0.pageSize = 10
            $0.pageToken = list.nextPageToken
          })
        XCTAssertEqual(Set(list.quizzes.map(\.id) + next.quizzes.map(\.id)), [viaH2.id, created.id, QuizSeed.demoQuizID])
        let unauthenticated = await statusCode { _ = try await quiz.createQuiz(.with { $0.quiz = Sample.quiz() }) }
        XCTAssertEqual(unauthenticated, .unauthenticated)
      }
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }

  static func metrics(_ harness: QuizHarness) async throws -> [String] {
    let admin = try await harness.quizHost.addresses().admin
    let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(admin!)/metrics")!)
    return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init).filter { $0.hasPrefix("cache_") }
  }

  func testImportOf150With3InvalidReportsExactlyThoseAndImportsNothing() async throws {
    let harness = try await QuizHarness.start()
    do {
      let author = try await harness.user("importer@example.com")
      let quiz = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz(questions: 0) }, metadata: author.metadata)
      let invalid: Set<Int> = [7, 70, 149]
      let response = try await harness.quiz.importQuestions(metadata: author.metadata) { writer in
        try await writer.write(.with { $0.target = .with { $0.quizID = quiz.id } })
        for i in 0..<150 {
          var question = Sample.question(i)
          if invalid.contains(i) { question.answerKey.correctChoiceIds = [] }
          try await writer.write(.with { $0.question = question })
        }
      }
      XCTAssertEqual(response.imported, 0)
      XCTAssertEqual(response.errors.map(\.index), invalid.sorted().map(Int32.init))
      XCTAssertTrue(response.errors.allSatisfy { $0.violations.map(\.field) == ["answer_key.correct_choice_ids"] })
      let after = try await harness.quiz.getQuiz(.with { $0.id = quiz.id }, metadata: author.metadata)
      XCTAssertEqual(after.questionCount, 0, "all or nothing")
      XCTAssertEqual(after.etag, quiz.etag)

      // All valid: imported in one write after the stream ended.
      let ok = try await harness.quiz.importQuestions(metadata: author.metadata) { writer in
        try await writer.write(.with { $0.target = .with { $0.quizID = quiz.id } })
        for i in 0..<150 { try await writer.write(.with { $0.question = Sample.question(i) }) }
      }
      XCTAssertEqual(ok.imported, 150)
      XCTAssertTrue(ok.errors.isEmpty)
      let full = try await harness.quiz.getQuiz(.with { $0.id = quiz.id }, metadata: author.metadata)
      XCTAssertEqual(full.questions.count, 150)
      XCTAssertEqual(full.etag, ok.etag)
      XCTAssertEqual(full.questions.map(\.prompt), (0..<150).map { "Question \($0)?" }, "stream order kept")
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }

  func testImportPastTheQuestionLimitIsInvalidArgumentNamingTheLimit() async throws {
    let harness = try await QuizHarness.start()
    do {
      let author = try await harness.user("bulk@example.com")
      let quiz = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz(questions: 10) }, metadata: author.metadata)
      let error = await rpcError {
        _ = try await harness.quiz.importQuestions(metadata: author.metadata) { writer in
          try await writer.write(.with { $0.target = .with { $0.quizID = quiz.id } })
          for i in 0..<250 { try await writer.write(.with { $0.question = Sample.question(i) }) }
        }
      }
      XCTAssertEqual(error?.code, .invalidArgument)
      XCTAssertTrue(error?.message.contains("200") ?? false, error?.message ?? "")
      let after = try await harness.quiz.getQuiz(.with { $0.id = quiz.id }, metadata: author.metadata)
      XCTAssertEqual(after.questionCount, 10, "nothing imported")
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }

  func testExportStreamsTenThousandQuizzes() async throws {
    let harness = try await QuizHarness.start()
    do {
      // Bulk rows straight into the service's database (another connection to its file).
      let db = try Database(.sqlite(path: harness.quizDatabasePath), logger: TestDatabases.logger)
      let repo = QuizRepository()
      for batch in 0..<20 {
        try await db.transaction { uow in
          for n in (batch * 500)..<((batch + 1) * 500) {
            try await repo.insert(QuizRepositoryTests.record(n, author: "u-bulk", state: .published, questions: 1), in: uow)
          }
        }
      }
      try await db.shutdown()
      let admin = try await harness.user(QuizHarness.adminEmail)
      let (count, ids, keys) = try await harness.quiz.exportQuizzes(.init(), metadata: admin.metadata) { response in
        var count = 0
        var ids = Set<String>()
        var keys = 0
        for try await quiz in response.messages {
          count += 1
          ids.insert(quiz.id)
          if quiz.questions.first?.hasAnswerKey == true { keys += 1 }
        }
        return (count, ids, keys)
      }
      XCTAssertEqual(count, 10_001, "10,000 quizzes and the demo")
      XCTAssertEqual(ids.count, count, "no quiz twice")
      XCTAssertEqual(keys, count, "admins export answer keys")
      // Anonymous: published quizzes without answer keys.
      let (anonymousCount, anonymousKeys) = try await harness.quiz.exportQuizzes(.init()) { response in
        var count = 0
        var keys = 0
        for try await quiz in response.messages {
          count += 1
          if quiz.questions.contains(where: \.hasAnswerKey) { keys += 1 }
        }
        return (count, keys)
      }
      XCTAssertEqual(anonymousCount, 10_001)
      XCTAssertEqual(anonymousKeys, 0)
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }
}
