import Foundation
import QuizwireProtos
import SQLKit
import Storage

/// Figures about one quiz computed in the background (`quiz.recompute_stats`), one row per
/// quiz. `recomputations` counts the runs that wrote it.
public struct QuizStatistics: Sendable, Hashable {
  public var quizID: String
  public var questionCount: Int
  public var totalPoints: Int
  public var recomputations: Int
  public var computedTimeMs: Int64
}

/// The `quiz_statistics` table.
public enum QuizStatisticsRepository {
  public static func migration(version: Int) -> Migration {
    Migration(version: version, name: "quiz_statistics", expandOnly: true) { _ in
      [
        """
        CREATE TABLE quiz_statistics (
          quiz_id TEXT PRIMARY KEY, question_count BIGINT NOT NULL, total_points BIGINT NOT NULL,
          recomputations BIGINT NOT NULL, computed_time_ms BIGINT NOT NULL)
        """
      ]
    }
  }

  /// Recomputes quiz `quizID`'s row from its questions in `uow`; a quiz that no longer exists
  /// loses its row. Returns the row written, nil when removed.
  @discardableResult
  public static func recompute(quizID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> QuizStatistics? {
    guard try await uow.sql.raw("SELECT id FROM quizzes WHERE id = \(bind: quizID)").first() != nil else {
      try await uow.sql.raw("DELETE FROM quiz_statistics WHERE quiz_id = \(bind: quizID)").run()
      return nil
    }
    let bodies = try await uow.sql.raw("SELECT body FROM quiz_questions WHERE quiz_id = \(bind: quizID)").all()
    var points = 0
    for row in bodies {
      points += Int(try Quiz_V1_Question(serializedBytes: try row.decode(column: "body", as: Data.self)).points)
    }
    let row = try await uow.sql.raw(
      """
      INSERT INTO quiz_statistics (quiz_id, question_count, total_points, recomputations, computed_time_ms)
      VALUES (\(bind: quizID), \(bind: Int64(bodies.count)), \(bind: Int64(points)), 1, \(bind: nowMs))
      ON CONFLICT (quiz_id) DO UPDATE SET question_count = excluded.question_count, total_points = excluded.total_points,
        recomputations = quiz_statistics.recomputations + 1, computed_time_ms = excluded.computed_time_ms
      RETURNING quiz_id, question_count, total_points, recomputations, computed_time_ms
      """
    ).first()
    return try row.map(Self.decode)
  }

  public static func find(quizID: String, in uow: UnitOfWork) async throws -> QuizStatistics? {
    try await uow.sql.raw(
      """
      SELECT quiz_id, question_count, total_points, recomputations, computed_time_ms FROM quiz_statistics WHERE quiz_id = \(bind: quizID)
      """
    ).first().map(Self.decode)
  }

  static func decode(_ row: any SQLRow) throws -> QuizStatistics {
    QuizStatistics(
      quizID: try row.decode(column: "quiz_id", as: String.self),
      questionCount: Int(try row.decode(column: "question_count", as: Int64.self)),
      totalPoints: Int(try row.decode(column: "total_points", as: Int64.self)),
      recomputations: Int(try row.decode(column: "recomputations", as: Int64.self)),
      computedTimeMs: try row.decode(column: "computed_time_ms", as: Int64.self))
  }
}
