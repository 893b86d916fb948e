import Foundation
import Logging
import QuizwireProtos
import SQLKit
import ServiceKit
import Storage

/// Keeps `Quiz.author_display_name` current: a durable consumer (group `quiz.author-names`)
/// of the auth service's topic `users`. A `user.renamed` updates that author's quizzes in the
/// same unit of work as the consumer's offset, under the profile-version rule, and drops
/// their cache entries on every replica. After OUT_OF_RANGE (auth purged what this group had
/// not read) it resyncs from auth's `BatchGetUsers`.
public enum AuthorNameFollower {
  public static let group = "quiz.author-names"
  /// Authors asked for per `BatchGetUsers` call during a resync.
  static let resyncBatch = 500

  public static func consumer(
    feed: any EventFeedClient, database: Database, directory: any AuthorDirectory, logger: Logger,
    config: EventConsumer.Config = EventConsumer.Config()
  ) -> EventConsumer {
    let quizzes = QuizRepository()
    let durable = EventConsumer.Durable(
      group: Self.group, database: database,
      apply: { event, uow in
        guard event.type == "user.renamed" else { return }
        let renamed = try Auth_V1_UserRenamed(serializedBytes: event.payload)
        guard renamed.userID == event.key else {
          throw EventPayloadError(description: "user.renamed \(event.offset): payload user \(renamed.userID) is not the event key")
        }
        _ = try await quizzes.applyAuthorRename(authorID: renamed.userID, displayName: renamed.displayName, version: event.keyVersion, in: uow)
      },
      resync: { try await Self.resync(database: database, directory: directory, logger: logger) })
    return EventConsumer(feed: feed, mode: .durable(durable), config: config, logger: logger)
  }

  /// Every author's current name from the directory, applied under the version rule.
  static func resync(database: Database, directory: any AuthorDirectory, logger: Logger) async throws {
    let quizzes = QuizRepository()
    var cursor = ""
    var renamed = 0
    while true {
      let authors = try await database.read { uow in
        try await uow.sql.raw(
          """
          SELECT DISTINCT author_id FROM quizzes WHERE author_id > \(bind: cursor) ORDER BY author_id LIMIT \(bind: Self.resyncBatch)
          """
        ).all().map { try $0.decode(column: "author_id", as: String.self) }
      }
      guard let last = authors.last else { break }
      let profiles = try await directory.profiles(ids: authors)
      renamed += try await database.transaction { uow in
        var changed = 0
        for profile in profiles.values.sorted(by: { $0.id < $1.id }) {
          changed += try await quizzes.applyAuthorRename(
            authorID: profile.id, displayName: profile.displayName, version: profile.version, in: uow)
        }
        return changed
      }
      cursor = last
    }
    logger.notice("author names resynced from the auth service", metadata: ["quizzes_changed": .stringConvertible(renamed)])
  }
}

/// An event whose payload contradicts its envelope: parked, not retried forever.
struct EventPayloadError: Error, CustomStringConvertible {
  var description: String
}
