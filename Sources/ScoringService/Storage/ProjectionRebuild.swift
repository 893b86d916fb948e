import Foundation
import SQLKit
import Storage

/// Drops the projections (`attempts`, `leaderboard`, `user_stats`) and rebuilds them from the
/// `attempt_events` log, in one unit of work. The result equals what the incremental writes
/// maintain (AttemptRepository), which the rebuild test proves on a randomized history.
///
/// `leaderboard_versions` is not derived from the log: a version only grows (watchers and
/// resuming streams compare versions), and `hidden` comes from `quiz.deleted`. Every quiz's
/// version is bumped once instead, so watchers reload the rebuilt boards.
public struct ProjectionRebuild: Sendable {
  public init() {}

  /// Attempts folded per read.
  static let batch = 500

  /// Returns the number of attempts folded.
  @discardableResult
  public func run(in uow: UnitOfWork) async throws -> Int {
    for table in ["attempts", "leaderboard", "user_stats"] {
      try await uow.write("DELETE FROM \(ident: table)")
    }
    let repo = AttemptRepository()
    var best: [String: [String: LeaderboardResult]] = [:]  // quiz → user → best
    var stats: [String: (attempts: Int64, finished: Int64, total: Int64, answers: Int64, playedMs: Int64)] = [:]
    var after = ""
    var count = 0
    while true {
      let ids = try await uow.sql.raw(
        "SELECT attempt_id FROM attempt_events WHERE seq = 1 AND attempt_id > \(bind: after) ORDER BY attempt_id LIMIT \(bind: Self.batch)"
      ).all().map { try $0.decode(column: "attempt_id", as: String.self) }
      guard let last = ids.last else { break }
      after = last
      for id in ids {
        guard let state = try await repo.find(id: id, in: uow) else { continue }
        count += 1
        try await repo.insertRow(state, in: uow)
        let user = state.started.userID
        stats[user, default: (0, 0, 0, 0, 0)].attempts += 1
        stats[user, default: (0, 0, 0, 0, 0)].answers += state.answersGiven
        stats[user, default: (0, 0, 0, 0, 0)].playedMs += state.playedMs
        guard let result = state.result else { continue }
        stats[user, default: (0, 0, 0, 0, 0)].finished += 1
        stats[user, default: (0, 0, 0, 0, 0)].total += Int64(result.score)
        let quiz = state.started.quizID
        if let current = best[quiz]?[user], !LeaderboardResult.ranksBefore(result, current) { continue }
        best[quiz, default: [:]][user] = result
      }
    }
    for (quizID, users) in best {
      for result in users.values {
        try await uow.write(
          """
          INSERT INTO leaderboard (quiz_id, user_id, attempt_id, score, max_score, duration_ms, finish_ms)
          VALUES (\(bind: quizID), \(bind: result.userID), \(bind: result.attemptID), \(bind: Int64(result.score)),
            \(bind: Int64(result.maxScore)), \(bind: result.durationMs), \(bind: result.finishMs))
          """)
      }
    }
    for (userID, s) in stats {
      try await uow.write(
        """
        INSERT INTO user_stats (user_id, attempts, finished, total_score, answers_given, time_played_ms)
        VALUES (\(bind: userID), \(bind: s.attempts), \(bind: s.finished), \(bind: s.total), \(bind: s.answers), \(bind: s.playedMs))
        """)
    }
    let quizzes = Set(best.keys).union(
      try await uow.sql.raw("SELECT quiz_id FROM leaderboard_versions").all().map { try $0.decode(column: "quiz_id", as: String.self) })
    for quizID in quizzes.sorted() { _ = try await LeaderboardRepository().bump(quizID: quizID, in: uow) }
    return count
  }
}

extension AttemptRepository {
  /// The read-model row of a folded attempt (rebuilds).
  func insertRow(_ state: AttemptState, in uow: UnitOfWork) async throws {
    let s = state.started
    try await uow.write(
      """
      INSERT INTO attempts (id, quiz_id, user_id, quiz_author_id, idempotency_key, state, score, max_score, current_index,
        question_count, seq, start_ms, finish_ms, last_deadline_ms)
      VALUES (\(bind: s.attemptID), \(bind: s.quizID), \(bind: s.userID), \(bind: s.quizAuthorID), \(bind: s.idempotencyKey),
        \(bind: state.isFinished ? "finished" : "in_progress"), \(bind: Int64(state.score)), \(bind: Int64(state.maxScore)),
        \(bind: Int64(state.currentIndex)), \(bind: Int64(s.questions.count)), \(bind: state.seq), \(bind: s.atMs),
        \(bind: state.finishMs), \(bind: state.lastDeadlineMs))
      """)
  }
}
