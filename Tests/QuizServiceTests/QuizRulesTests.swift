import QuizwireProtos
import ServiceKit
import XCTest

@testable import QuizService

/// The pure rules: limits, text, per-kind question rules, field paths, access, etags.
final class QuizRulesTests: XCTestCase {
  func fields(_ request: Quiz_V1_CreateQuizRequest) -> [String] { request.fieldViolations.violations.map(\.field) }

  func create(_ edit: (inout Quiz_V1_Quiz) -> Void) -> Quiz_V1_CreateQuizRequest {
    var quiz = Sample.quiz(questions: 4)
    edit(&quiz)
    return .with { $0.quiz = quiz }
  }

  func testLimitsAndTextAreCheckedWithFullFieldPaths() {
    XCTAssertEqual(fields(create { _ in }), [])
    XCTAssertEqual(fields(create { $0.title = String(repeating: "x", count: 200) }), [])
    XCTAssertEqual(fields(create { $0.title = String(repeating: "x", count: 201) }), ["quiz.title"])
    XCTAssertEqual(fields(create { $0.title = "  " }), ["quiz.title"])
    XCTAssertEqual(fields(create { $0.title = "nul\u{0}" }), ["quiz.title"])
    XCTAssertEqual(fields(create { $0.title = "line\nbreak" }), ["quiz.title"], "a title is one line")
    XCTAssertEqual(fields(create { $0.description_p = "two\nlines\tand a tab" }), [])
    XCTAssertEqual(fields(create { $0.description_p = "bell\u{7}" }), ["quiz.description"])
    XCTAssertEqual(fields(create { $0.tags = ["ok", "not ok"] }), ["quiz.tags[1]"])
    XCTAssertEqual(fields(create { $0.questions[3].choices[1].text = "" }), ["quiz.questions[3].choices[1].text"])
    XCTAssertEqual(fields(create { $0.questions[2].choices[0].text = "esc\u{1B}" }), ["quiz.questions[2].choices[0].text"])
    XCTAssertEqual(fields(create { $0.questions[1].prompt = "\u{0}" }), ["quiz.questions[1].prompt"])
    XCTAssertEqual(fields(create { $0.questionTimeLimitSeconds = 4 }), ["quiz.question_time_limit_seconds"])

    let tooMany = create { $0.questions = (0..<201).map { Sample.question($0) } }
    XCTAssertEqual(fields(tooMany), ["quiz.questions"])
    XCTAssertTrue(tooMany.fieldViolations.violations[0].violationDescription.contains("200"))
    XCTAssertEqual(fields(create { $0.questions = (0..<200).map { Sample.question($0) } }), [])
    let choices = create { q in
      q.questions[0].choices = (0..<11).map { i in
        .with {
          $0.id = "c\(i)"; $0.text = "c"
        }
      }
    }
    XCTAssertTrue(fields(choices).contains("quiz.questions[0].choices"))
  }

  func testQuestionRulesPerKind() {
    func problems(_ edit: (inout Quiz_V1_Question) -> Void) -> [String] {
      var q = Sample.question()
      edit(&q)
      return QuizRules.questionViolations(q).map(\.field)
    }
    XCTAssertEqual(problems { _ in }, [])
    XCTAssertEqual(problems { $0.choices[1].id = "a" }, ["choices[1].id"], "choice ids are unique")
    XCTAssertEqual(problems { $0.answerKey.correctChoiceIds = ["a", "b"] }, ["answer_key.correct_choice_ids"], "single choice: exactly one")
    XCTAssertEqual(problems { $0.answerKey.correctChoiceIds = ["z"] }, ["answer_key.correct_choice_ids[0]"])
    XCTAssertEqual(
      problems {
        $0.kind = .multipleChoice; $0.answerKey.correctChoiceIds = ["a", "b"]
      }, [])
    XCTAssertEqual(
      problems {
        $0.kind = .multipleChoice; $0.answerKey.correctChoiceIds = []
      }, ["answer_key.correct_choice_ids"])
    XCTAssertEqual(problems { $0.kind = .unspecified }, ["kind"])
    let shortText: (inout Quiz_V1_Question) -> Void = {
      $0.kind = .shortText
      $0.choices = []
      $0.answerKey = .with { $0.acceptedTexts = ["await"] }
    }
    XCTAssertEqual(problems(shortText), [])
    XCTAssertEqual(
      problems {
        shortText(&$0); $0.answerKey.acceptedTexts = []
      }, ["answer_key.accepted_texts"])

    var trueFalse = Quiz_V1_Question.with {
      $0.kind = .trueFalse
      $0.prompt = "Actors are reference types."
      $0.answerKey = .with { $0.correctChoiceIds = ["true"] }
    }
    XCTAssertEqual(QuizRules.questionViolations(trueFalse), [])
    let stored = QuizRules.normalized(trueFalse, id: "qq_1")
    XCTAssertEqual(stored.choices.map(\.id), ["true", "false"], "the server supplies true/false")
    XCTAssertEqual(stored.points, 1)
    XCTAssertEqual(stored.id, "qq_1")
    trueFalse.answerKey.correctChoiceIds = ["maybe"]
    XCTAssertEqual(QuizRules.questionViolations(trueFalse).map(\.field), ["answer_key.correct_choice_ids[0]"])
  }

  func testAccessPolicy() {
    let quiz = QuizRepositoryTests.record(1, author: "u-a", state: .draft)
    var published = quiz
    published.state = .published
    var deleted = published
    deleted.deletedTimeMs = 1
    let author = QuizViewer(userID: "u-a")
    let stranger = QuizViewer(userID: "u-b")
    let admin = QuizViewer(userID: "u-c", isAdmin: true)
    let service = QuizViewer(userID: nil, isService: true)
    let keyWithoutRead = QuizViewer(userID: "u-a", mayReadPrivate: false, mayWrite: false)

    XCTAssertEqual(QuizAccess.read(quiz, by: author), .visible(answerKeys: true))
    XCTAssertEqual(QuizAccess.read(quiz, by: stranger), .hidden)
    XCTAssertEqual(QuizAccess.read(quiz, by: keyWithoutRead), .hidden, "a key without quiz:read doesn't see its owner's drafts")
    XCTAssertEqual(QuizAccess.read(published, by: .anonymous), .visible(answerKeys: false))
    XCTAssertEqual(QuizAccess.read(published, by: service), .visible(answerKeys: true))
    XCTAssertEqual(QuizAccess.read(deleted, by: admin), .hidden)
    XCTAssertEqual(QuizAccess.read(deleted, by: admin, showDeleted: true), .visible(answerKeys: true))
    XCTAssertEqual(QuizAccess.read(deleted, by: author, showDeleted: true), .hidden)
    XCTAssertThrowsError(try QuizAccess.checkWrite(quiz, by: stranger)) { XCTAssertEqual($0 as? QuizError, .notFound(quiz.id)) }
    XCTAssertThrowsError(try QuizAccess.checkWrite(published, by: stranger)) {
      guard case .permissionDenied = $0 as? QuizError else { return XCTFail("\($0)") }
    }
    XCTAssertThrowsError(try QuizAccess.checkWrite(published, by: service))
    XCTAssertNoThrow(try QuizAccess.checkWrite(published, by: admin))
    XCTAssertEqual(QuizAccess.listing(stranger).visibility, .publishedOrAuthoredBy("u-b"))
    XCTAssertEqual(QuizAccess.listing(keyWithoutRead).visibility, .publishedOnly)
    XCTAssertEqual(QuizAccess.listing(admin, showDeleted: true).showDeleted, true)
    XCTAssertEqual(QuizAccess.listing(stranger, showDeleted: true).showDeleted, false)
  }

  func testEtagsChangeOnEveryWriteEvenBackToEarlierContent() {
    var quiz = QuizRepositoryTests.record(1)
    let first = quiz.etag
    quiz.title = "B"
    quiz.touch(nowMs: 0)
    let second = quiz.etag
    quiz.title = "Quiz 1"
    quiz.touch(nowMs: 0)
    XCTAssertEqual(Set([first, second, quiz.etag]).count, 3, "A→B→A still fails a writer holding A's etag")
  }
}
