import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import ServiceKit
import XCTest

@testable import QuizService

/// The IDOR matrix: every method × every kind of caller × the owner's draft, published and
/// deleted quiz, over the framed wire behind the real auth service, asserting exact codes.
/// "Own" and "other's" are both covered: the owner (and the owner's API keys) act on their own
/// quizzes, everyone else on someone else's.
final class QuizAccessMatrixTests: XCTestCase {
  enum Role: String, CaseIterable {
    case anonymous, user, owner, otherAuthor, admin, service
    /// The owner's API keys: no scopes, quiz:read, quiz:write.
    case keyNoScopes, keyRead, keyWrite
  }

  enum State: String, CaseIterable { case draft, published, deleted }

  enum Method: String, CaseIterable {
    case getQuiz, listQuizzes, batchGetQuizzes, exportQuizzes, getAnswerKey, createQuiz
    case updateQuiz, deleteQuiz, publishQuiz, unpublishQuiz, archiveQuiz
    case addQuestion, updateQuestion, removeQuestion, reorderQuestions, importQuestions

    var writes: Bool { ![.getQuiz, .listQuizzes, .batchGetQuizzes, .exportQuizzes, .getAnswerKey].contains(self) }
    var changesQuestions: Bool { [.addQuestion, .updateQuestion, .removeQuestion, .reorderQuestions, .importQuestions].contains(self) }
  }

  /// Whether `role` sees the owner's quiz in `state`.
  static func visible(_ role: Role, _ state: State) -> Bool {
    if state == .deleted { return false }
    switch role {
    case .owner, .admin, .service, .keyRead, .keyWrite: return true
    case .anonymous, .user, .otherAuthor, .keyNoScopes: return state == .published
    }
  }

  /// Whether `role` gets the answer keys of a quiz it sees.
  static func seesAnswerKeys(_ role: Role) -> Bool { [.owner, .admin, .service, .keyRead, .keyWrite].contains(role) }

  /// The exact code; nil is OK. For list, batch and export, NOT_FOUND stands for "absent".
  static func expected(_ method: Method, _ role: Role, _ state: State) -> RPCError.Code? {
    switch method {
    case .getQuiz, .listQuizzes, .batchGetQuizzes, .exportQuizzes:
      return visible(role, state) ? nil : .notFound
    case .getAnswerKey:
      if role == .anonymous { return .unauthenticated }
      guard role == .service else { return .permissionDenied }
      return state == .deleted ? .notFound : nil
    case .createQuiz:
      switch role {
      case .anonymous: return .unauthenticated
      case .keyNoScopes, .keyRead, .service: return .permissionDenied
      default: return nil
      }
    default:
      if role == .anonymous { return .unauthenticated }
      if role == .keyNoScopes || role == .keyRead { return .permissionDenied }  // no quiz:write
      guard visible(role, state) else { return .notFound }
      guard [.owner, .admin, .keyWrite].contains(role) else { return .permissionDenied }
      if method.changesQuestions && state != .draft { return .failedPrecondition }
      return nil
    }
  }

  func testEveryMethodEveryCallerEveryState() async throws {
    let harness = try await QuizHarness.start()
    do {
      let owner = try await harness.user("owner@example.com")
      var callers: [Role: Metadata] = [.anonymous: [:], .owner: owner.metadata]
      callers[.user] = try await harness.user("user@example.com").metadata
      let other = try await harness.user("other@example.com")
      callers[.otherAuthor] = other.metadata
      _ = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz("Other's own") }, metadata: other.metadata)
      callers[.admin] = try await harness.user(QuizHarness.adminEmail).metadata
      callers[.service] = try await harness.serviceMetadata()
      callers[.keyNoScopes] = try await harness.apiKey(of: owner.metadata, scopes: [])
      callers[.keyRead] = try await harness.apiKey(of: owner.metadata, scopes: ["quiz:read"])
      callers[.keyWrite] = try await harness.apiKey(of: owner.metadata, scopes: ["quiz:write"])

      // Quizzes nobody changes (refused calls and reads), and fresh ones for each call that
      // may succeed.
      let shared = try await self.trio(harness, owner.metadata)
      var failures: [String] = []
      var cells = 0
      for method in Method.allCases {
        for role in Role.allCases {
          let fresh = method.writes && [.owner, .admin, .keyWrite].contains(role)
          let quizzes = fresh ? try await self.trio(harness, owner.metadata) : shared
          for state in State.allCases {
            let quiz = quizzes[state]!
            let got = await self.call(method, quiz: quiz, harness: harness, metadata: callers[role]!, role: role)
            let want = Self.expected(method, role, state)
            cells += 1
            if got != want {
              failures.append(
                "\(method.rawValue) by \(role.rawValue) on \(state.rawValue): got \(got.map { "\($0)" } ?? "OK"), want \(want.map { "\($0)" } ?? "OK")")
            }
            if method == .createQuiz { break }  // not about an existing quiz
          }
        }
      }
      XCTAssertEqual(failures, [], "\(failures.count) of \(cells) cells wrong")

      // AIP-164: only an admin sees a deleted quiz, and only when asking with show_deleted.
      let deleted = shared[.deleted]!
      for role in Role.allCases {
        let code = await statusCode {
          _ = try await harness.quiz.getQuiz(
            .with {
              $0.id = deleted.id
              $0.showDeleted = true
            }, metadata: callers[role]!)
        }
        XCTAssertEqual(code, role == .admin ? nil : .notFound, "\(role) with show_deleted")
      }
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }

  /// The owner's draft (2 questions), published and deleted quiz.
  func trio(_ harness: QuizHarness, _ owner: Metadata) async throws -> [State: Quiz_V1_Quiz] {
    let draft = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz("Draft", questions: 2) }, metadata: owner)
    let toPublish = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz("Published", questions: 2) }, metadata: owner)
    let published = try await harness.quiz.publishQuiz(.with { $0.id = toPublish.id }, metadata: owner)
    let toDelete = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz("Deleted", questions: 2) }, metadata: owner)
    let deleted = try await harness.quiz.deleteQuiz(.with { $0.id = toDelete.id }, metadata: owner)
    return [.draft: draft, .published: published, .deleted: deleted]
  }

  /// One call; also checks that a visible quiz carries answer keys exactly when it should.
  func call(_ method: Method, quiz: Quiz_V1_Quiz, harness: QuizHarness, metadata: Metadata, role: Role) async -> RPCError.Code? {
    let api = harness.quiz
    let id = quiz.id
    let questionIDs = quiz.questions.map(\.id)
    func checkKeys(_ found: Quiz_V1_Quiz) {
      XCTAssertEqual(found.questions.contains(where: \.hasAnswerKey), Self.seesAnswerKeys(role), "answer keys for \(role) via \(method)")
    }
    return await statusCode {
      switch method {
      case .getQuiz:
        checkKeys(try await api.getQuiz(.with { $0.id = id }, metadata: metadata))
      case .listQuizzes:
        var token = ""
        var found: Quiz_V1_Quiz?
        repeat {
          let page = try await api.listQuizzes(
            .with {
              $0.pageSize = 100
              $0.pageToken = token
            }, metadata: metadata)
          found = found ?? page.quizzes.first { $0.id == id }
          token = page.nextPageToken
        } while !token.isEmpty
        guard let found else { throw RPCError(code: .notFound, message: "not listed") }
        checkKeys(found)
      case .batchGetQuizzes:
        let answer = try await api.batchGetQuizzes(.with { $0.ids = [id, "qz_missing"] }, metadata: metadata)
        XCTAssertTrue(answer.missingIds.contains("qz_missing"))
        guard let found = answer.quizzes.first else {
          XCTAssertEqual(answer.missingIds, [id, "qz_missing"])
          throw RPCError(code: .notFound, message: "missing")
        }
        checkKeys(found)
      case .exportQuizzes:
        let found = try await api.exportQuizzes(.init(), metadata: metadata) { response in
          var match: Quiz_V1_Quiz?
          for try await q in response.messages where q.id == id { match = q }
          return match
        }
        guard let found else { throw RPCError(code: .notFound, message: "not exported") }
        checkKeys(found)
      case .getAnswerKey:
        let keys = try await api.getAnswerKey(.with { $0.quizID = id }, metadata: metadata)
        XCTAssertEqual(keys.answerKeys.count, 2)
      case .createQuiz:
        _ = try await api.createQuiz(.with { $0.quiz = Sample.quiz("Mine") }, metadata: metadata)
      case .updateQuiz:
        _ = try await api.updateQuiz(
          .with {
            $0.quiz = .with {
              $0.id = id
              $0.title = "Changed"
            }
            $0.updateMask = .with { $0.paths = ["title"] }
          }, metadata: metadata)
      case .deleteQuiz:
        _ = try await api.deleteQuiz(.with { $0.id = id }, metadata: metadata)
      case .publishQuiz:
        _ = try await api.publishQuiz(.with { $0.id = id }, metadata: metadata)
      case .unpublishQuiz:
        _ = try await api.unpublishQuiz(.with { $0.id = id }, metadata: metadata)
      case .archiveQuiz:
        _ = try await api.archiveQuiz(.with { $0.id = id }, metadata: metadata)
      case .addQuestion:
        _ = try await api.addQuestion(
          .with {
            $0.quizID = id
            $0.question = Sample.question(5)
          }, metadata: metadata)
      case .updateQuestion:
        _ = try await api.updateQuestion(
          .with {
            $0.quizID = id
            $0.question = .with {
              $0.id = questionIDs.first ?? "qq_none"
              $0.prompt = "Changed?"
            }
            $0.updateMask = .with { $0.paths = ["prompt"] }
          }, metadata: metadata)
      case .removeQuestion:
        _ = try await api.removeQuestion(
          .with {
            $0.quizID = id
            $0.questionID = questionIDs.first ?? "qq_none"
          }, metadata: metadata)
      case .reorderQuestions:
        _ = try await api.reorderQuestions(
          .with {
            $0.quizID = id
            $0.questionIds = questionIDs.reversed()
          }, metadata: metadata)
      case .importQuestions:
        let answer = try await api.importQuestions(metadata: metadata) { writer in
          try await writer.write(.with { $0.target = .with { $0.quizID = id } })
          try await writer.write(.with { $0.question = Sample.question(7) })
        }
        XCTAssertEqual(answer.imported, 1)
      }
    }
  }
}
