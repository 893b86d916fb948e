import Foundation
import QuizwireProtos
import Storage

/// The demo content a fresh installation starts with.
public enum QuizSeed {
  public static let demoQuizID = "qz_demo_swift_concurrency"
  public static let demoAuthorID = "quizwire-demo"
  /// Not a user of the auth service: the demo's name is fixed (version 1, so the author-name
  /// backfill leaves it alone).
  public static let demoAuthorName = "Quizwire"

  /// A data migration, so it runs once per database (recorded in `data_migrations`, replicas
  /// take turns) and only when the database holds no quiz yet: an installation that already
  /// has content never gets the demo.
  public static var demoQuiz: DataMigration {
    DataMigration(version: 1, name: "demo quiz") { uow, _ in
      let repository = QuizRepository()
      guard try await repository.isEmpty(in: uow) else { return nil }
      let quiz = self.demo(nowMs: Int64(Date().timeIntervalSince1970 * 1000))
      try await repository.insert(quiz, in: uow)
      let payload = try QuizService.changedPayload(quiz, change: "created")
      for type in ["quiz.changed", "quiz.published"] {
        try await Outbox.append(type: type, key: quiz.id, keyVersion: quiz.updateTimeMs, payload: payload, timeMs: quiz.updateTimeMs, in: uow)
      }
      return nil
    }
  }

  /// "Swift concurrency basics": published, five questions of four kinds.
  public static func demo(nowMs: Int64) -> QuizRecord {
    func choice(_ id: String, _ text: String) -> Quiz_V1_Choice {
      .with {
        $0.id = id
        $0.text = text
      }
    }
    func question(_ n: Int, _ kind: Quiz_V1_QuestionKind, _ prompt: String, _ choices: [Quiz_V1_Choice], correct: [String], accepted: [String] = [])
      -> Quiz_V1_Question
    {
      let q = Quiz_V1_Question.with {
        $0.kind = kind
        $0.prompt = prompt
        $0.choices = choices
        $0.answerKey = .with {
          $0.correctChoiceIds = correct
          $0.acceptedTexts = accepted
        }
      }
      return QuizRules.normalized(q, id: "qq_demo_\(n)")
    }
    let questions = [
      question(
        1, .singleChoice, "Which keyword marks a function that can suspend?",
        [choice("a", "async"), choice("b", "defer"), choice("c", "suspend"), choice("d", "yield")], correct: ["a"]),
      question(
        2, .trueFalse, "Code outside an actor can read the actor's mutable stored properties synchronously.", [], correct: ["false"]),
      question(
        3, .multipleChoice, "Which of these are Sendable?",
        [choice("a", "Int"), choice("b", "An actor"), choice("c", "A non-final class with var properties"), choice("d", "String")],
        correct: ["a", "b", "d"]),
      question(4, .shortText, "Which keyword is written before a call to an async function?", [], correct: [], accepted: ["await"]),
      question(
        5, .singleChoice, "What does Task.checkCancellation() do in a cancelled task?",
        [choice("a", "Throws CancellationError"), choice("b", "Returns false"), choice("c", "Stops the process")], correct: ["a"]),
    ]
    var quiz = QuizRecord(
      id: demoQuizID, authorID: demoAuthorID, title: "Swift concurrency basics",
      description: "async/await, actors, Sendable and cancellation: five questions to warm up.", tags: ["concurrency", "swift"],
      state: .published, questionTimeLimitSeconds: Int(QuizRules.defaultTimeLimit), questionCount: questions.count, etag: "",
      createTimeMs: nowMs, updateTimeMs: nowMs, questions: questions, authorDisplayName: demoAuthorName, authorNameVersion: 1)
    quiz.etag = QuizEtag.initial(quiz)
    return quiz
  }
}
