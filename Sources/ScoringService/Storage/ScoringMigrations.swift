import Storage

/// The scoring service's schema, forward-only, on both dialects. Times are epoch
/// milliseconds. `attempt_events` is the append-only source of truth; `attempts`,
/// `leaderboard` (+ `leaderboard_versions`) and `user_stats` are projections of it, written in
/// the unit of work that appends the events they follow (see `AttemptRepository`).
public enum ScoringMigrations {
  public static let service = "scoring"

  public static var all: [Migration] {
    [
      Migration(version: 1, name: "attempt_events, attempts, leaderboard, user_stats") { dialect in
        let blob = dialect == .postgres ? "BYTEA" : "BLOB"
        return [
          // (attempt_id, seq) unique: two writers folding the same state cannot both append
          // its next event; the loser reloads and retries (an answer is never counted twice).
          """
          CREATE TABLE attempt_events (
            attempt_id TEXT NOT NULL, seq BIGINT NOT NULL, time_ms BIGINT NOT NULL, type TEXT NOT NULL, payload \(blob) NOT NULL,
            PRIMARY KEY (attempt_id, seq))
          """,
          // The read model. (user_id, idempotency_key) unique: a retried start with the same key
          // cannot create a second attempt (NULL keys never conflict).
          """
          CREATE TABLE attempts (
            id TEXT PRIMARY KEY, quiz_id TEXT NOT NULL, user_id TEXT NOT NULL, quiz_author_id TEXT NOT NULL,
            idempotency_key TEXT NULL, state TEXT NOT NULL, score BIGINT NOT NULL, max_score BIGINT NOT NULL,
            current_index BIGINT NOT NULL, question_count BIGINT NOT NULL, seq BIGINT NOT NULL,
            start_ms BIGINT NOT NULL, finish_ms BIGINT NULL, last_deadline_ms BIGINT NOT NULL)
          """,
          "CREATE UNIQUE INDEX attempts_user_key ON attempts (user_id, idempotency_key)",
          "CREATE INDEX attempts_quiz_start ON attempts (quiz_id, start_ms, id)",
          "CREATE INDEX attempts_user_start ON attempts (user_id, start_ms, id)",
          "CREATE INDEX attempts_open ON attempts (state, last_deadline_ms)",
          // Best finished attempt per user per quiz.
          """
          CREATE TABLE leaderboard (
            quiz_id TEXT NOT NULL, user_id TEXT NOT NULL, attempt_id TEXT NOT NULL, score BIGINT NOT NULL, max_score BIGINT NOT NULL,
            duration_ms BIGINT NOT NULL, finish_ms BIGINT NOT NULL, PRIMARY KEY (quiz_id, user_id))
          """,
          "CREATE INDEX leaderboard_rank ON leaderboard (quiz_id, score DESC, duration_ms, finish_ms, attempt_id)",
          "CREATE INDEX leaderboard_user ON leaderboard (user_id, quiz_id)",
          // The per-quiz projection sequence (grows with every change of that quiz's board) and
          // whether the quiz was deleted (its board is hidden).
          "CREATE TABLE leaderboard_versions (quiz_id TEXT PRIMARY KEY, version BIGINT NOT NULL, hidden BIGINT NOT NULL)",
          "CREATE TABLE user_stats (user_id TEXT PRIMARY KEY, attempts BIGINT NOT NULL, finished BIGINT NOT NULL, total_score BIGINT NOT NULL)",
        ]
      },
      // attempt.finished (topic "attempts").
      Outbox.migration(version: 2),
      // The abandoned-attempt job and outbox retention.
      JobQueue.migration(version: 3),
      OutboxRetention.migration(version: 4),
      // Consuming quiz's "quizzes" and auth's "users".
      ConsumerStore.migration(version: 5),
      // Write-behind play counters (PlayCounters); additive, so older replicas run on.
      Migration(version: 6, name: "user_stats play counters", expandOnly: true) { _ in
        [
          "ALTER TABLE user_stats ADD COLUMN answers_given BIGINT NOT NULL DEFAULT 0",
          "ALTER TABLE user_stats ADD COLUMN time_played_ms BIGINT NOT NULL DEFAULT 0",
        ]
      },
    ]
  }
}
