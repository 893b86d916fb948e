import Storage
import Synchronization

/// Fills `author_display_name` of the quizzes stored before the column existed: a data
/// migration (resumable, one transaction per batch, progress in `data_migrations`) that asks
/// the auth service, so the quiz module runs it in the background (`ModuleParts.dataMigrations`)
/// and keeps retrying while auth is unreachable.
///
/// Each batch is the next `batchSize` quizzes in id order whose name was never filled
/// (version 0). The profiles are fetched in `prepare`, outside the batch's transaction (a
/// remote call must not hold the database's writer); the batch then applies them under the
/// version rule, so a rename applied meanwhile is never overwritten. Authors auth doesn't know
/// keep an empty name (and version 0: a later rename still fills it).
public final class AuthorNameBackfill: Sendable {
  /// Its identity in `data_migrations`: never rename it.
  public static let name = "quiz author display names"
  /// The schema step it needs (`quizzes.author_display_name`).
  public static let schemaVersion = 4

  let directory: any AuthorDirectory
  let batchSize: Int
  let quizzes = QuizRepository()
  /// What `prepare` fetched for the next batch: the cursor it started from and, for every
  /// author of the batch, the profile (nil: unknown to auth).
  private let fetched = Mutex<(cursor: String?, profiles: [String: AuthorProfile?])?>(nil)

  public init(directory: any AuthorDirectory, batchSize: Int = 100) {
    self.directory = directory
    self.batchSize = batchSize
  }

  /// Fetch failed to match the batch: the cursor moved (another replica ran a batch).
  struct StaleProfiles: Error, CustomStringConvertible {
    var description: String { "author profiles were fetched for another batch (a replica ran it meanwhile); fetching again" }
  }

  public var migration: DataMigration {
    DataMigration(
      version: Self.schemaVersion, name: Self.name,
      batch: { uow, cursor in try await self.batch(uow, cursor) },
      prepare: { db, cursor in try await self.prepare(db, cursor) })
  }

  func prepare(_ db: Database, _ cursor: String?) async throws {
    self.fetched.withLock { $0 = nil }
    let rows = try await db.read { uow in try await self.quizzes.unnamedQuizzes(after: cursor, limit: self.batchSize, in: uow) }
    let authors = Array(Set(rows.map(\.authorID)))
    let found = authors.isEmpty ? [:] : try await self.directory.profiles(ids: authors)
    var profiles: [String: AuthorProfile?] = [:]
    for author in authors { profiles[author] = .some(found[author]) }
    self.fetched.withLock { $0 = (cursor, profiles) }
  }

  func batch(_ uow: UnitOfWork, _ cursor: String?) async throws -> String? {
    let rows = try await self.quizzes.unnamedQuizzes(after: cursor, limit: self.batchSize, in: uow)
    guard let last = rows.last else { return nil }
    let fetched = self.fetched.withLock { $0 }
    guard let fetched, fetched.cursor == cursor, rows.allSatisfy({ fetched.profiles.keys.contains($0.authorID) }) else {
      throw StaleProfiles()
    }
    var byAuthor: [String: [String]] = [:]
    for row in rows { byAuthor[row.authorID, default: []].append(row.id) }
    for (author, ids) in byAuthor.sorted(by: { $0.key < $1.key }) {
      guard case .some(.some(let profile)) = fetched.profiles[author] else { continue }
      if try await self.quizzes.fillAuthorName(profile, quizIDs: ids, in: uow) > 0 {
        try await QuizCache.postAuthorRenamed(author, in: uow)
      }
    }
    return last.id
  }
}
