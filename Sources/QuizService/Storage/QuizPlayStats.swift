import Foundation
import QuizwireProtos
import SQLKit
import Storage
import SwiftProtobuf

/// Quizzes' play statistics from the scoring service's `attempt.finished` events.
///
/// The sums live on the quiz's own row (`play_count`, `play_score_sum`, `play_max_score_sum`),
/// so every read and every list page gets them with no further query. Each attempt counts
/// once: `quiz_plays` holds one row per counted attempt under its primary key, inserted in
/// the unit of work that adds to the sums, so a redelivered event (or one re-emitted at
/// another offset) finds the row and adds nothing — a unique constraint, not a read-then-write
/// check. `quiz_statistics` (migration 5) stays what it was: content figures the
/// `quiz.recompute_stats` job rewrites and drops with the quiz.
public enum QuizPlayStats {
  public static func migration(version: Int) -> Migration {
    Migration(version: version, name: "quiz play statistics", expandOnly: true) { _ in
      [
        "ALTER TABLE quizzes ADD COLUMN play_count BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE quizzes ADD COLUMN play_score_sum BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE quizzes ADD COLUMN play_max_score_sum BIGINT NOT NULL DEFAULT 0",
        """
        CREATE TABLE quiz_plays (
          attempt_id TEXT PRIMARY KEY, quiz_id TEXT NOT NULL, score BIGINT NOT NULL, max_score BIGINT NOT NULL,
          finish_time_ms BIGINT NOT NULL, recorded_time_ms BIGINT NOT NULL)
        """,
      ]
    }
  }

  /// What `record` did with one finished attempt.
  public enum Outcome: Sendable, Hashable {
    /// Added to the quiz's statistics.
    case counted
    /// That attempt was counted before: nothing changed.
    case duplicate
    /// Remembered (so it never counts later), but this database has no such quiz.
    case unknownQuiz
  }

  /// Counts `finished` on its quiz in `uow` (the consumer's unit of work, with its offset), and
  /// drops the quiz's cached reads on every replica once `uow` commits.
  @discardableResult
  public static func record(_ finished: Scoring_V1_AttemptFinished, nowMs: Int64, in uow: UnitOfWork) async throws -> Outcome {
    let finishMs = finished.hasFinishTime ? finished.finishTime.milliseconds : nowMs
    let inserted = try await uow.sql.raw(
      """
      INSERT INTO quiz_plays (attempt_id, quiz_id, score, max_score, finish_time_ms, recorded_time_ms)
      VALUES (\(bind: finished.attemptID), \(bind: finished.quizID), \(bind: Int64(finished.score)), \(bind: Int64(finished.maxScore)),
        \(bind: finishMs), \(bind: nowMs))
      ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id
      """
    ).all()
    guard !inserted.isEmpty else { return .duplicate }
    let updated = try await uow.sql.raw(
      """
      UPDATE quizzes SET play_count = play_count + 1, play_score_sum = play_score_sum + \(bind: Int64(finished.score)),
        play_max_score_sum = play_max_score_sum + \(bind: Int64(finished.maxScore))
      WHERE id = \(bind: finished.quizID) RETURNING id
      """
    ).all()
    guard !updated.isEmpty else { return .unknownQuiz }
    try await QuizCache.postPlayed(quizID: finished.quizID, in: uow)
    return .counted
  }

  /// The statistics of quiz `quizID` (nil: no such quiz).
  public static func find(quizID: String, in uow: UnitOfWork) async throws -> QuizPlays? {
    try await uow.sql.raw("SELECT play_count, play_score_sum, play_max_score_sum FROM quizzes WHERE id = \(bind: quizID)").first().map {
      QuizPlays(
        count: try $0.decode(column: "play_count", as: Int64.self), scoreSum: try $0.decode(column: "play_score_sum", as: Int64.self),
        maxScoreSum: try $0.decode(column: "play_max_score_sum", as: Int64.self))
    }
  }
}

extension Google_Protobuf_Timestamp {
  /// Epoch milliseconds.
  var milliseconds: Int64 { self.seconds * 1000 + Int64(self.nanos / 1_000_000) }
}
