import Foundation
import GRPCCore
import GRPCProtobuf
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// Handlers called in-process as a given principal, on both databases: etags under
/// concurrency, states, events, redaction.
final class QuizServiceTests: XCTestCase {
  static let owner = Principal(kind: .user, subject: "u-owner", roles: ["user"])
  static let stranger = Principal(kind: .user, subject: "u-stranger", roles: ["user"])
  static let authors = StaticAuthorDirectory([
    AuthorProfile(id: "u-owner", displayName: "Owner", version: 1), AuthorProfile(id: "u-stranger", displayName: "Stranger", version: 1),
  ])

  /// A migrated database of each dialect and a service on it.
  static func each(_ body: (QuizService, Database) async throws -> Void) async throws {
    try await TestDatabases.each { db in
      try await QuizRepositoryTests.migrate(db)
      let service = QuizService(
        db: db, tokens: try PageTokenCodec(secret: "test page token key 0123456789"), authors: Self.authors, logger: TestDatabases.logger)
      try await body(service, db)
    }
  }

  func testTwoConcurrentUpdatersWithTheSameEtagExactlyOneWins() async throws {
    try await Self.each { service, db in
      let created = try await asCaller(Self.owner) { try await service.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context()) }
      var etag = created.etag
      for round in 0..<10 {
        let current = etag
        let outcomes = try await asCaller(Self.owner) {
          try await withThrowingTaskGroup(of: Result<String, RPCError>.self) { group in
            for writer in 0..<2 {
              group.addTask {
                let request = Quiz_V1_UpdateQuizRequest.with {
                  $0.quiz = .with {
                    $0.id = created.id
                    $0.title = "round \(round) writer \(writer)"
                  }
                  $0.updateMask = .with { $0.paths = ["title"] }
                  $0.etag = current
                }
                do {
                  return .success(try await service.updateQuiz(request: request, context: context()).etag)
                } catch let error as QuizError {
                  return .failure(RPCError(code: error.rpcErrorCode, message: error.rpcErrorMessage, metadata: error.rpcErrorMetadata))
                }
              }
            }
            return try await group.reduce(into: []) { $0.append($1) }
          }
        }
        let wins = outcomes.compactMap { try? $0.get() }
        XCTAssertEqual(wins.count, 1, "exactly one writer wins (round \(round), \(db.dialect))")
        for case .failure(let error) in outcomes {
          XCTAssertEqual(error.code, .aborted)
          XCTAssertEqual(Self.errorInfoReason(error), "ETAG_MISMATCH")
        }
        etag = wins[0]
      }
    }
  }

  func testAStaleEtagIsAbortedAndNoEtagMeansLastWriterWins() async throws {
    try await Self.each { service, _ in
      try await asCaller(Self.owner) {
        let quiz = try await service.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context())
        let renamed = try await service.updateQuiz(
          request: .with {
            $0.quiz = .with {
              $0.id = quiz.id
              $0.title = "Renamed"
            }
            $0.updateMask = .with { $0.paths = ["title"] }
          }, context: context())
        XCTAssertNotEqual(renamed.etag, quiz.etag, "every content write changes the etag")
        XCTAssertEqual(renamed.questions.count, 1, "fields outside the mask are kept")
        do {
          _ = try await service.publishQuiz(
            request: .with {
              $0.id = quiz.id
              $0.etag = quiz.etag
            }, context: context())
          XCTFail("a stale etag was accepted")
        } catch let error as QuizError {
          XCTAssertEqual(error, .etagMismatch(id: quiz.id))
        }
        let published = try await service.publishQuiz(
          request: .with {
            $0.id = quiz.id
            $0.etag = renamed.etag
          }, context: context())
        XCTAssertEqual(published.state, .published)
        // Publishing again is a no-op: same etag, no error (a retried call succeeds).
        let again = try await service.publishQuiz(request: .with { $0.id = quiz.id }, context: context())
        XCTAssertEqual(again.etag, published.etag)
      }
    }
  }

  func testPublishNeedsAQuestionAndAPublishedQuizsQuestionsAreFrozen() async throws {
    try await Self.each { service, db in
      try await asCaller(Self.owner) {
        let empty = try await service.createQuiz(request: .with { $0.quiz = Sample.quiz(questions: 0) }, context: context())
        let refused = await rpcError { _ = try await service.publishQuiz(request: .with { $0.id = empty.id }, context: context()) }
        XCTAssertEqual(refused?.code, .failedPrecondition)
        XCTAssertEqual(Self.preconditionTypes(refused), ["QUESTIONS"])

        let quiz = try await service.createQuiz(request: .with { $0.quiz = Sample.quiz(questions: 2) }, context: context())
        _ = try await service.publishQuiz(request: .with { $0.id = quiz.id }, context: context())
        let frozen = await rpcError {
          _ = try await service.addQuestion(
            request: .with {
              $0.quizID = quiz.id
              $0.question = Sample.question()
            }, context: context())
        }
        XCTAssertEqual(frozen?.code, .failedPrecondition)
        XCTAssertEqual(Self.preconditionTypes(frozen), ["STATE"])
        // Back to draft, then the questions change.
        _ = try await service.unpublishQuiz(request: .with { $0.id = quiz.id }, context: context())
        let added = try await service.addQuestion(
          request: .with {
            $0.quizID = quiz.id
            $0.question = Sample.question(9)
            $0.position = 0
          }, context: context())
        XCTAssertEqual(added.questions.map(\.prompt), ["Question 9?", "Question 0?", "Question 1?"])
        XCTAssertEqual(added.questionCount, 3)
        let reordered = try await service.reorderQuestions(
          request: .with {
            $0.quizID = quiz.id
            $0.questionIds = added.questions.map(\.id).reversed()
          }, context: context())
        XCTAssertEqual(reordered.questions.map(\.prompt), ["Question 1?", "Question 0?", "Question 9?"])
        let removed = try await service.removeQuestion(
          request: .with {
            $0.quizID = quiz.id
            $0.questionID = added.questions[0].id
          }, context: context())
        XCTAssertEqual(removed.questions.map(\.prompt), ["Question 1?", "Question 0?"], "\(db.dialect)")
      }
    }
  }

  func testEveryWriteAppendsItsEventsInTheSameUnitOfWork() async throws {
    try await Self.each { service, db in
      let quiz = try await asCaller(Self.owner) {
        let quiz = try await service.createQuiz(request: .with { $0.quiz = Sample.quiz() }, context: context())
        _ = try await service.publishQuiz(request: .with { $0.id = quiz.id }, context: context())
        _ = try await service.deleteQuiz(request: .with { $0.id = quiz.id }, context: context())
        return quiz
      }
      let events = try await db.read { uow in try await Outbox.read(after: 0, limit: 100, in: uow) }
      XCTAssertEqual(events.map(\.type), ["quiz.changed", "quiz.changed", "quiz.published", "quiz.changed", "quiz.deleted"])
      XCTAssertTrue(events.allSatisfy { $0.key == quiz.id })
      let versions = events.map(\.keyVersion)
      XCTAssertEqual(versions, versions.sorted(), "key versions never go back")
      XCTAssertEqual(Set(versions).count, 3, "one version per write")
      let payload = try Quiz_V1_QuizChanged(serializedBytes: events[0].payload)
      XCTAssertEqual(payload.quizID, quiz.id)
      XCTAssertEqual(payload.etag, quiz.etag)
      XCTAssertEqual(payload.change, "created")
      let deleted = try Quiz_V1_QuizChanged(serializedBytes: events[4].payload)
      XCTAssertEqual(deleted.change, "deleted")
      XCTAssertEqual(deleted.authorID, quiz.authorID)
      // A refused write appends nothing.
      _ = await rpcError { _ = try await asCaller(Self.stranger) { try await service.archiveQuiz(request: .with { $0.id = quiz.id }, context: context()) } }
      let after = try await db.read { uow in try await Outbox.read(after: 0, limit: 100, in: uow) }
      XCTAssertEqual(after.count, events.count)
    }
  }

  func testTrueFalseGetsItsChoicesAndAnswerKeysAreUnsetForOthers() async throws {
    try await Self.each { service, _ in
      let question = Quiz_V1_Question.with {
        $0.kind = .trueFalse
        $0.prompt = "Actors serialize access to their state."
        $0.answerKey = .with { $0.correctChoiceIds = ["true"] }
      }
      let quiz = try await asCaller(Self.owner) {
        let quiz = try await service.createQuiz(
          request: .with {
            $0.quiz = .with {
              $0.title = "TF"
              $0.questions = [question]
            }
          }, context: context())
        return try await service.publishQuiz(request: .with { $0.id = quiz.id }, context: context())
      }
      XCTAssertEqual(quiz.questions[0].choices.map(\.id), ["true", "false"])
      XCTAssertEqual(quiz.questions[0].points, 1, "default points")
      XCTAssertTrue(quiz.questions[0].hasAnswerKey, "the author sees the key")
      let seen = try await asCaller(Self.stranger) { try await service.getQuiz(request: .with { $0.id = quiz.id }, context: context()) }
      XCTAssertFalse(seen.questions[0].hasAnswerKey, "unset, not empty, for another user")
      let anonymous = try await service.getQuiz(request: .with { $0.id = quiz.id }, context: context())
      XCTAssertFalse(anonymous.questions[0].hasAnswerKey)
      let masked = try await service.getQuiz(
        request: .with {
          $0.id = quiz.id
          $0.readMask = .with { $0.paths = ["id", "title"] }
        }, context: context())
      XCTAssertEqual(masked.title, "TF")
      XCTAssertTrue(masked.questions.isEmpty)
      XCTAssertEqual(masked.etag, "")
      let unknown = await rpcError {
        _ = try await service.getQuiz(
          request: .with {
            $0.id = quiz.id
            $0.readMask = .with { $0.paths = ["colour"] }
          }, context: context())
      }
      XCTAssertEqual(unknown?.code, .invalidArgument)
    }
  }

  // MARK: Helpers

  static func errorInfoReason(_ error: RPCError) -> String? {
    guard let status = try? error.unpackGoogleRPCStatus() else { return nil }
    for detail in status.details { if let info = detail.errorInfo { return info.reason } }
    return nil
  }

  static func preconditionTypes(_ error: RPCError?) -> [String] {
    guard let error, let status = try? error.unpackGoogleRPCStatus() else { return [] }
    return status.details.compactMap { $0.preconditionFailure }.flatMap { $0.violations.map(\.type) }
  }
}

/// Runs `body` as a handler runs inside a call from `principal` (the interceptors' CallInfo).
func asCaller<T>(_ principal: Principal, _ body: () async throws -> T) async throws -> T {
  let call = CallInfo(
    requestID: "test", method: MethodDescriptor(fullyQualifiedService: "quiz.v1.QuizService", method: "InProcess"), peer: "in-process")
  call.principal = principal
  var context = ServiceContext.current ?? .topLevel
  context.call = call
  return try await ServiceContext.withValue(context) { try await body() }
}

func context() -> ServerContext {
  ServerContext(
    descriptor: MethodDescriptor(fullyQualifiedService: "quiz.v1.QuizService", method: "InProcess"), remotePeer: "in-process",
    localPeer: "in-process", cancellation: .init())
}

/// The status a handler's error reaches a caller with (domain errors converted as the error
/// interceptor does).
func rpcErrorOf(_ error: any Error) -> RPCError {
  if let error = error as? RPCError { return error }
  if let error = error as? any RPCErrorConvertible { return RPCError(error) }
  return RPCError(code: .unknown, message: "\(error)")
}
