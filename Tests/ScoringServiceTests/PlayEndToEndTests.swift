import Foundation
import GRPCCore
import QuizwireProtos
import XCTest

/// Real auth, quiz and scoring hosts in-process over the framed wire: a whole quiz played over
/// `Play` (server-enforced time limit), idempotent starts, SubmitAnswers, the leaderboard, the
/// access rules of StartAttempt.
final class PlayEndToEndTests: XCTestCase {
  func testAPlayScoresOnTheServerTimesOutASilentPlayerAndRanksOnTheLeaderboard() async throws {
    try await ScoringHarness.with { harness in
      try await self.run(harness)
    }
  }

  func testConcurrentStartsWithOneKeyMakeOneAttempt() async throws {
    try await ScoringHarness.with { h in
      let author = try await h.user("author@example.com", name: "Ada")
      let player = try await h.user("player@example.com", name: "Pat")
      let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz() }, metadata: author.metadata)
      _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
      let ids = try await withThrowingTaskGroup(of: String.self) { group in
        for _ in 0..<16 {
          group.addTask {
            try await h.scoring.startAttempt(
              .with {
                $0.quizID = created.id
                $0.idempotencyKey = "retry-me"
              }, metadata: player.metadata
            ).id
          }
        }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      XCTAssertEqual(ids.count, 1, "16 concurrent retries of one start: one attempt")
      let stats = try await h.scoring.getUserStats(.with { $0.userID = player.id }, metadata: player.metadata)
      XCTAssertEqual(stats.attempts, 1)
      let listed = try await h.scoring.listAttempts(.with { $0.userID = player.id }, metadata: player.metadata)
      XCTAssertEqual(listed.attempts.map(\.id), Array(ids))
    }
  }

  func testARunningAttemptKeepsItsAnswerKeyWhenTheQuizIsEdited() async throws {
    try await ScoringHarness.with { h in
      let author = try await h.user("author@example.com", name: "Ada")
      let player = try await h.user("player@example.com", name: "Pat")
      let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 60) }, metadata: author.metadata)
      _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
      let running = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata)

      // The author changes question 0's right answer from "a" to "b" and publishes again.
      _ = try await h.quiz.unpublishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
      var question = created.questions[0]
      question.answerKey = .with { $0.correctChoiceIds = ["b"] }
      _ = try await h.quiz.updateQuestion(
        .with {
          $0.quizID = created.id
          $0.question = question
        }, metadata: author.metadata)
      _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)
      let fresh = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata)

      func answerFirst(_ attempt: String, _ choice: String) async throws -> Scoring_V1_Attempt {
        try await h.scoring.submitAnswers(metadata: player.metadata) { writer in
          try await writer.write(
            .with {
              $0.attemptID = attempt
              $0.questionID = created.questions[0].id
              $0.choiceIds = [choice]
            })
        }
      }
      let old = try await answerFirst(running.id, "a")
      XCTAssertEqual(old.answers.first?.correct, true, "the attempt scores by the key it started with")
      let new = try await answerFirst(fresh.id, "b")
      XCTAssertEqual(new.answers.first?.correct, true, "a new attempt gets the edited key (cache keyed by etag)")
      // The answer-key cache is on the scoring host's /metrics (two etags: two misses at least).
      let exposition = h.hosts[1].metrics.exposition()
      let misses = exposition.split(separator: "\n").first { $0.hasPrefix(#"cache_misses_total{cache="scoring.answer_keys"} "#) }
      XCTAssertGreaterThanOrEqual(Int(misses?.split(separator: " ").last ?? "") ?? 0, 2, "\(misses ?? "no series")")
    }
  }

  private func run(_ h: ScoringHarness) async throws {
    let author = try await h.user("author@example.com", name: "Ada")
    let player = try await h.user("player@example.com", name: "Pat")
    let fast = try await h.user("fast@example.com", name: "Flo")
    let created = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz(limitSeconds: 5) }, metadata: author.metadata)
    let ids = created.questions.map(\.id)
    XCTAssertEqual(ids.count, 3)

    // A draft: its author may see it (not published), anyone else may not (not found).
    let draftByAuthor = await rpcCode { _ = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: author.metadata) }
    XCTAssertEqual(draftByAuthor, .failedPrecondition)
    let draftByPlayer = await rpcCode { _ = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: player.metadata) }
    XCTAssertEqual(draftByPlayer, .notFound)
    let missing = await rpcCode { _ = try await h.scoring.startAttempt(.with { $0.quizID = "qz_missing" }, metadata: player.metadata) }
    XCTAssertEqual(missing, .notFound)
    let anonymous = await rpcCode { _ = try await h.scoring.startAttempt(.with { $0.quizID = created.id }) }
    XCTAssertEqual(anonymous, .unauthenticated)
    _ = try await h.quiz.publishQuiz(.with { $0.id = created.id }, metadata: author.metadata)

    // A first message other than start/resume.
    let badFirst = await rpcCode {
      _ = try await h.play(player.metadata, first: ScoringSample.answer(ids[0], ["a"])) { _ in [] }
    }
    XCTAssertEqual(badFirst, .invalidArgument)

    // Question 0 right, a wrong-question answer (refused, the stream goes on), question 1
    // left silent (timed out by the server), question 2 right with messy text.
    let started = Date()
    let events = try await h.play(player.metadata, first: ScoringSample.start(created.id, key: "key-1")) { event in
      guard case .question(let q)? = event.kind else { return [] }
      switch q.index {
      case 0: return [ScoringSample.answer(ids[2], text: "too early"), ScoringSample.answer(q.question.id, ["a"])]
      case 1: return []
      default: return [ScoringSample.answer(q.question.id, text: "  grace   HOPPER ")]
      }
    }
    let elapsed = Date().timeIntervalSince(started)
    let questions = events.compactMap { if case .question(let q)? = $0.kind { q } else { nil } }
    let feedback = events.compactMap { if case .feedback(let f)? = $0.kind { f } else { nil } }
    let rejected = events.compactMap { if case .rejected(let r)? = $0.kind { r } else { nil } }
    XCTAssertEqual(questions.map(\.index), [0, 1, 2])
    XCTAssertEqual(questions.map(\.question.id), ids)
    XCTAssertFalse(questions.contains { $0.question.hasAnswerKey }, "players never see answer keys")
    XCTAssertEqual(questions.first?.question.prompt, "One?")
    XCTAssertEqual(rejected.map(\.code), [Int32(RPCError.Code.failedPrecondition.rawValue)])
    XCTAssertEqual(feedback.map(\.points), [1, 0, 3])
    XCTAssertEqual(feedback.map(\.late), [false, true, false], "the silent question timed out")
    XCTAssertEqual(feedback.map(\.runningScore), [1, 1, 4])
    XCTAssertGreaterThanOrEqual(elapsed, 5, "the time-out waited for the deadline")
    guard case .finished(let finished)? = events.last?.kind else { return XCTFail("the stream ends with finished: \(events)") }
    XCTAssertEqual(finished.attempt.state, .finished)
    XCTAssertEqual(finished.attempt.score, 4)
    XCTAssertEqual(finished.attempt.maxScore, 6)
    XCTAssertEqual(finished.attempt.answers.map(\.correct), [true, false, true])

    // The same key again: the same attempt, not a new one; with another quiz: refused.
    let again = try await h.scoring.startAttempt(
      .with {
        $0.quizID = created.id
        $0.idempotencyKey = "key-1"
      }, metadata: player.metadata)
    XCTAssertEqual(again.id, finished.attempt.id)
    XCTAssertEqual(again.score, 4)
    let other = try await h.quiz.createQuiz(.with { $0.quiz = ScoringSample.quiz() }, metadata: author.metadata)
    _ = try await h.quiz.publishQuiz(.with { $0.id = other.id }, metadata: author.metadata)
    let reused = await rpcCode {
      _ = try await h.scoring.startAttempt(
        .with {
          $0.quizID = other.id
          $0.idempotencyKey = "key-1"
        }, metadata: player.metadata)
    }
    XCTAssertEqual(reused, .invalidArgument)

    // Another player, everything right over SubmitAnswers (sent twice: counted once).
    let attempt = try await h.scoring.startAttempt(.with { $0.quizID = created.id }, metadata: fast.metadata)
    let answers: [Scoring_V1_SubmitAnswersRequest] = [
      .with {
        $0.attemptID = attempt.id; $0.questionID = ids[0]; $0.choiceIds = ["a"]
      },
      .with {
        $0.attemptID = attempt.id; $0.questionID = ids[0]; $0.choiceIds = ["b"]
      },
      .with {
        $0.attemptID = attempt.id; $0.questionID = ids[1]; $0.choiceIds = ["c", "a"]
      },
      .with {
        $0.attemptID = attempt.id; $0.questionID = ids[2]; $0.text = "Grace Hopper"
      },
    ]
    let submitted = try await h.scoring.submitAnswers(metadata: fast.metadata) { writer in
      for answer in answers { try await writer.write(answer) }
    }
    XCTAssertEqual(submitted.state, .finished)
    XCTAssertEqual(submitted.score, 6)
    XCTAssertEqual(submitted.answers.map(\.points), [1, 2, 3], "the repeated answer kept the first")

    // Someone else's attempt is not found; the author of the quiz may read it.
    let stranger = await rpcCode { _ = try await h.scoring.getAttempt(.with { $0.id = attempt.id }, metadata: player.metadata) }
    XCTAssertEqual(stranger, .notFound)
    let byAuthor = try await h.scoring.getAttempt(.with { $0.id = attempt.id }, metadata: author.metadata)
    XCTAssertEqual(byAuthor.score, 6)

    // The leaderboard: public, best first, public names only.
    let board = try await h.scoring.getLeaderboard(.with { $0.quizID = created.id })
    XCTAssertEqual(board.entries.map(\.userID), [fast.id, player.id])
    XCTAssertEqual(board.entries.map(\.rank), [1, 2])
    XCTAssertEqual(board.entries.map(\.score), [6, 4])
    XCTAssertEqual(board.entries.map(\.displayName), ["Flo", "Pat"])
    XCTAssertEqual(board.version, 2)

    let stats = try await h.scoring.getUserStats(.with { $0.userID = player.id }, metadata: player.metadata)
    XCTAssertEqual(stats.attempts, 1)
    XCTAssertEqual(stats.finished, 1)
    XCTAssertEqual(stats.totalScore, 4)
    let othersStats = await rpcCode { _ = try await h.scoring.getUserStats(.with { $0.userID = player.id }, metadata: fast.metadata) }
    XCTAssertEqual(othersStats, .permissionDenied)
    let listed = try await h.scoring.listAttempts(.with { $0.quizID = created.id }, metadata: author.metadata)
    XCTAssertEqual(Set(listed.attempts.map(\.id)), [finished.attempt.id, attempt.id])
  }
}
