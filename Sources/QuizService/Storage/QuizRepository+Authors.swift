import SQLKit
import Storage

/// Authors' display names on quizzes. Every write of a name is guarded by the author's
/// profile version (auth's `user.*` key version): a name is applied only over an older one,
/// so a replayed or late event never overwrites a newer name.
extension QuizRepository {
  /// Applies auth's `user.renamed` for `authorID` (in the consumer's unit of work): every quiz
  /// of that author whose name is older than `version` gets `displayName`. Returns how many
  /// quizzes changed (0 for a stale or repeated event). Those quizzes' cache entries are
  /// dropped on every replica once `uow` commits (a `quiz_changed` notification posted in it).
  public func applyAuthorRename(authorID: String, displayName: String, version: Int64, in uow: UnitOfWork) async throws -> Int {
    // First: takes the author's row lock, so a CreateQuiz of this author either commits
    // before this update (and is updated by it) or reads the newer name after it.
    _ = try await self.newestAuthorName(AuthorProfile(id: authorID, displayName: displayName, version: version), in: uow)
    let rows = try await uow.sql.raw(
      """
      UPDATE quizzes SET author_display_name = \(bind: displayName), author_name_version = \(bind: version)
      WHERE author_id = \(bind: authorID) AND author_name_version < \(bind: version) RETURNING id
      """
    ).all()
    if !rows.isEmpty { try await QuizCache.postAuthorRenamed(authorID, in: uow) }
    return rows.count
  }

  /// Records `profile` as the author's name unless a newer one is known, and returns the
  /// newest known (`profile` itself, or what a rename applied meanwhile). Version 0 (the author
  /// is unknown to auth) records nothing.
  public func newestAuthorName(_ profile: AuthorProfile, in uow: UnitOfWork) async throws -> AuthorProfile {
    if profile.version > 0 {
      try await uow.write(
        """
        INSERT INTO quiz_authors (author_id, display_name, version)
        VALUES (\(bind: profile.id), \(bind: profile.displayName), \(bind: profile.version))
        ON CONFLICT (author_id) DO UPDATE SET display_name = excluded.display_name, version = excluded.version
        WHERE quiz_authors.version < excluded.version
        """)
    }
    let row = try await uow.sql.raw(
      "SELECT display_name, version FROM quiz_authors WHERE author_id = \(bind: profile.id)"
    ).first()
    guard let row else { return profile }
    let stored = AuthorProfile(
      id: profile.id, displayName: try row.decode(column: "display_name", as: String.self),
      version: try row.decode(column: "version", as: Int64.self))
    return stored.version > profile.version ? stored : profile
  }

  /// Quizzes whose author name was never filled (version 0), in id order after `cursor`: the
  /// backfill's next batch (deleted quizzes too).
  public func unnamedQuizzes(after cursor: String?, limit: Int, in uow: UnitOfWork) async throws -> [(id: String, authorID: String)] {
    let after = cursor.map { id -> SQLQueryString in " AND id > \(bind: id)" } ?? ""
    let rows = try await uow.sql.raw(
      "SELECT id, author_id FROM quizzes WHERE author_name_version = 0" + after + " ORDER BY id LIMIT \(bind: limit)"
    ).all()
    return try rows.map { (try $0.decode(column: "id", as: String.self), try $0.decode(column: "author_id", as: String.self)) }
  }

  /// Fills the name of the quizzes among `quizIDs` (all by `profile`'s author) whose name is
  /// older than `profile`. Returns how many changed.
  public func fillAuthorName(_ profile: AuthorProfile, quizIDs: [String], in uow: UnitOfWork) async throws -> Int {
    guard !quizIDs.isEmpty, profile.version > 0 else { return 0 }
    let rows = try await uow.sql.raw(
      """
      UPDATE quizzes SET author_display_name = \(bind: profile.displayName), author_name_version = \(bind: profile.version)
      WHERE id IN (\(binds: quizIDs)) AND author_id = \(bind: profile.id) AND author_name_version < \(bind: profile.version) RETURNING id
      """
    ).all()
    return rows.count
  }
}
