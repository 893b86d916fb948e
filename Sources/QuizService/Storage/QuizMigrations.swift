import Storage

/// The quiz service's schema, forward-only, on both dialects. Times are epoch milliseconds
/// (BIGINT); a question is stored whole as its serialized `quiz.v1.Question` (choices and answer
/// key included), ordered by `position`. Indexes serve every filter field and `order_by` key
/// with `id` as the tie-breaker (keyset pagination).
public enum QuizMigrations {
  public static let service = "quiz"

  public static var all: [Migration] {
    [
      Migration(version: 1, name: "quizzes, tags, questions") { dialect in
        let blob = dialect == .postgres ? "BYTEA" : "BLOB"
        var statements = [
          """
          CREATE TABLE quizzes (
            id TEXT PRIMARY KEY, author_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
            state TEXT NOT NULL, question_time_limit_seconds INTEGER NOT NULL, question_count INTEGER NOT NULL,
            etag TEXT NOT NULL, create_time_ms BIGINT NOT NULL, update_time_ms BIGINT NOT NULL, deleted_time_ms BIGINT NULL)
          """,
          "CREATE INDEX quizzes_state_created ON quizzes (state, create_time_ms, id)",
          "CREATE INDEX quizzes_author_created ON quizzes (author_id, create_time_ms, id)",
          "CREATE INDEX quizzes_created ON quizzes (create_time_ms, id)",
          "CREATE INDEX quizzes_updated ON quizzes (update_time_ms, id)",
          "CREATE INDEX quizzes_title ON quizzes (title, id)",
          "CREATE TABLE quiz_tags (quiz_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (quiz_id, tag))",
          "CREATE INDEX quiz_tags_tag ON quiz_tags (tag, quiz_id)",
          "CREATE TABLE quiz_questions (id TEXT PRIMARY KEY, quiz_id TEXT NOT NULL, position INTEGER NOT NULL, body \(blob) NOT NULL)",
          "CREATE INDEX quiz_questions_quiz ON quiz_questions (quiz_id, position)",
        ]
        if dialect == .postgres {
          // `title : "…"` is a case-insensitive substring match; on PostgreSQL a trigram GIN
          // index serves it. Without the extension that filter would scan the table, so the
          // migration stops here with a message that says what is missing.
          statements += [
            """
            DO $$ BEGIN
              CREATE EXTENSION IF NOT EXISTS pg_trgm;
            EXCEPTION WHEN OTHERS THEN
              RAISE EXCEPTION 'the quiz schema needs the PostgreSQL extension pg_trgm (install postgresql-contrib, or have a superuser run CREATE EXTENSION pg_trgm): %', SQLERRM;
            END $$
            """,
            "CREATE INDEX quizzes_title_trgm ON quizzes USING gin (lower(title) gin_trgm_ops)",
          ]
        }
        return statements
      },
      Outbox.migration(version: 2),
      // The job queue (quiz.recompute_stats, outbox retention).
      JobQueue.migration(version: 3),
      // The author's public display name on every quiz, and the per-author version of the
      // name last applied (user.renamed's key version; 0: never filled, see
      // AuthorNameBackfill); quiz_authors keeps the newest name known per author, so a quiz
      // created while a rename is applied still gets the newer one.
      Migration(version: 4, name: "quizzes.author_display_name", expandOnly: true) { _ in
        [
          "ALTER TABLE quizzes ADD COLUMN author_display_name TEXT NOT NULL DEFAULT ''",
          "ALTER TABLE quizzes ADD COLUMN author_name_version BIGINT NOT NULL DEFAULT 0",
          "CREATE TABLE quiz_authors (author_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, version BIGINT NOT NULL)",
        ]
      },
      QuizStatisticsRepository.migration(version: 5),
      // The feed of the outbox (topic "quizzes"): acknowledgements and purge horizons.
      OutboxRetention.migration(version: 6),
      // Consuming auth's "users" (author names): offsets, key versions, dead letters.
      ConsumerStore.migration(version: 7),
      // Play counts and averages from scoring's "attempts": sums on the quiz row, one
      // dedupe row per counted attempt (QuizPlayStats).
      QuizPlayStats.migration(version: 8),
    ]
  }
}
