import Foundation
import SQLKit
import Storage

/// A user's totals (the `user_stats` projection) with their best result per quiz.
public struct UserStatsRecord: Sendable, Hashable {
  public var userID: String
  public var attempts: Int64
  public var finished: Int64
  public var totalScore: Int64
  /// Play counters (written behind: see `PlayCounters`).
  public var answersGiven: Int64 = 0
  public var timePlayedMs: Int64 = 0
  /// Best per quiz, keyed by quiz id.
  public var best: [String: LeaderboardResult]
}

/// The leaderboard projection: the best finished attempt per user per quiz, and each quiz's
/// projection sequence (`version`), which grows by one with every change of that quiz's board
/// and is stored with it, so every replica reads the same version for the same board.
public struct LeaderboardRepository: Sendable {
  public init() {}

  /// Puts `result` on the board if it beats the user's best there (higher score, then shorter
  /// duration, then earlier finish). Returns the quiz's new version, or nil if nothing changed.
  public func offer(_ result: LeaderboardResult, quizID: String, in uow: UnitOfWork) async throws -> Int64? {
    let lock: SQLQueryString = uow.dialect == .postgres ? " FOR UPDATE" : ""
    let existing = try await uow.sql.raw(
      "SELECT " + Self.columns + " FROM leaderboard WHERE quiz_id = \(bind: quizID) AND user_id = \(bind: result.userID)" + lock
    ).all().first.map(Self.result)
    if let existing {
      guard LeaderboardResult.ranksBefore(result, existing) else { return nil }
      try await uow.write(
        """
        UPDATE leaderboard SET attempt_id = \(bind: result.attemptID), score = \(bind: Int64(result.score)),
          max_score = \(bind: Int64(result.maxScore)), duration_ms = \(bind: result.durationMs), finish_ms = \(bind: result.finishMs)
        WHERE quiz_id = \(bind: quizID) AND user_id = \(bind: result.userID)
        """)
    } else {
      // Two first finishes of the same user racing: the loser's unique violation retries.
      try await uow.write(
        """
        INSERT INTO leaderboard (quiz_id, user_id, attempt_id, score, max_score, duration_ms, finish_ms)
        VALUES (\(bind: quizID), \(bind: result.userID), \(bind: result.attemptID), \(bind: Int64(result.score)),
          \(bind: Int64(result.maxScore)), \(bind: result.durationMs), \(bind: result.finishMs))
        """)
    }
    return try await self.bump(quizID: quizID, in: uow)
  }

  /// The next version of the quiz's board.
  func bump(quizID: String, in uow: UnitOfWork) async throws -> Int64 {
    try await uow.write("INSERT INTO leaderboard_versions (quiz_id, version, hidden) VALUES (\(bind: quizID), 0, 0) ON CONFLICT (quiz_id) DO NOTHING")
    let row = try await uow.sql.raw("UPDATE leaderboard_versions SET version = version + 1 WHERE quiz_id = \(bind: quizID) RETURNING version")
      .all().first
    let version = try row?.decode(column: "version", as: Int64.self) ?? 0
    // Every replica's watchers follow the projection: "<quiz id> <version>" once this commits
    // (PostgreSQL NOTIFY; in-process on SQLite).
    try await ChangeNotifier.post(channel: Self.channel, payload: "\(quizID) \(version)", in: uow)
    return version
  }

  /// The change-notification channel of board versions.
  public static let channel = "scoring_leaderboard"

  /// Hides a deleted quiz's board (and bumps its version, so watchers see the change).
  public func hide(quizID: String, in uow: UnitOfWork) async throws -> Int64 {
    let version = try await self.bump(quizID: quizID, in: uow)
    try await uow.write("UPDATE leaderboard_versions SET hidden = 1 WHERE quiz_id = \(bind: quizID)")
    return version
  }

  /// Quizzes with a board that is not hidden, in id order after `after` (resyncs).
  public func shownQuizIDs(after: String, limit: Int, in uow: UnitOfWork) async throws -> [String] {
    try await uow.sql.raw(
      "SELECT quiz_id FROM leaderboard_versions WHERE hidden = 0 AND quiz_id > \(bind: after) ORDER BY quiz_id LIMIT \(bind: limit)"
    ).all().map { try $0.decode(column: "quiz_id", as: String.self) }
  }

  /// The quiz's version (0: never changed) and whether its board is hidden.
  public func version(quizID: String, in uow: UnitOfWork) async throws -> (version: Int64, hidden: Bool) {
    guard let row = try await uow.sql.raw("SELECT version, hidden FROM leaderboard_versions WHERE quiz_id = \(bind: quizID)").all().first
    else { return (0, false) }
    return (try row.decode(column: "version", as: Int64.self), try row.decode(column: "hidden", as: Int64.self) != 0)
  }

  /// Board entries in rank order from `offset` (rank = offset + index + 1).
  public func page(quizID: String, offset: Int, limit: Int, in uow: UnitOfWork) async throws -> [LeaderboardResult] {
    try await uow.sql.raw(
      "SELECT " + Self.columns
        + " FROM leaderboard WHERE quiz_id = \(bind: quizID) ORDER BY score DESC, duration_ms, finish_ms, attempt_id LIMIT \(bind: limit) OFFSET \(bind: offset)"
    ).all().map(Self.result)
  }

  public func userStats(userID: String, in uow: UnitOfWork) async throws -> UserStatsRecord {
    var stats = UserStatsRecord(userID: userID, attempts: 0, finished: 0, totalScore: 0, best: [:])
    if let row = try await uow.sql.raw(
      "SELECT attempts, finished, total_score, answers_given, time_played_ms FROM user_stats WHERE user_id = \(bind: userID)"
    ).all().first {
      stats.answersGiven = try row.decode(column: "answers_given", as: Int64.self)
      stats.timePlayedMs = try row.decode(column: "time_played_ms", as: Int64.self)
      stats.attempts = try row.decode(column: "attempts", as: Int64.self)
      stats.finished = try row.decode(column: "finished", as: Int64.self)
      stats.totalScore = try row.decode(column: "total_score", as: Int64.self)
    }
    for row in try await uow.sql.raw("SELECT quiz_id, " + Self.columns + " FROM leaderboard WHERE user_id = \(bind: userID)").all() {
      stats.best[try row.decode(column: "quiz_id", as: String.self)] = try Self.result(row)
    }
    return stats
  }

  static let columns: SQLQueryString = "user_id, attempt_id, score, max_score, duration_ms, finish_ms"

  static func result(_ row: any SQLRow) throws -> LeaderboardResult {
    LeaderboardResult(
      attemptID: try row.decode(column: "attempt_id", as: String.self), userID: try row.decode(column: "user_id", as: String.self),
      score: Int32(try row.decode(column: "score", as: Int64.self)), maxScore: Int32(try row.decode(column: "max_score", as: Int64.self)),
      durationMs: try row.decode(column: "duration_ms", as: Int64.self), finishMs: try row.decode(column: "finish_ms", as: Int64.self))
  }
}
