import Foundation
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// What scoring follows on other services' feeds.
public enum ScoringConsumers {
  public static let quizzesGroup = "scoring.quizzes"

  /// Quiz's `quizzes`, durable (group `scoring.quizzes`): `quiz.deleted` hides that quiz's
  /// leaderboard (in the consumer's unit of work, so once). A resync (the feed's retention
  /// passed this group's offset) asks the quiz service which boards' quizzes are gone and
  /// hides those.
  public static func deletions(
    feed: any EventFeedClient, database: Database, quizzes: any QuizSource, hub: LeaderboardHub, logger: Logger
  ) -> EventConsumer {
    let durable = EventConsumer.Durable(
      group: quizzesGroup, database: database,
      apply: { event, uow in
        guard event.type == "quiz.deleted" else { return }
        _ = try await LeaderboardRepository().hide(quizID: event.key, in: uow)
        uow.afterCommit { Task { await hub.changed(quizID: event.key) } }
      },
      resync: { try await hideDeleted(database: database, quizzes: quizzes, hub: hub) })
    return EventConsumer(feed: feed, mode: .durable(durable), logger: logger)
  }

  /// Hides every shown board whose quiz the quiz service no longer has; returns how many.
  @discardableResult
  public static func hideDeleted(database: Database, quizzes: any QuizSource, hub: LeaderboardHub) async throws -> Int {
    let board = LeaderboardRepository()
    var after = ""
    var hidden = 0
    while true {
      let ids = try await database.read { uow in try await board.shownQuizIDs(after: after, limit: 100, in: uow) }
      guard let last = ids.last else { return hidden }
      after = last
      for quizID in try await quizzes.missing(ids: ids) {
        _ = try await database.transaction { uow in try await board.hide(quizID: quizID, in: uow) }
        await hub.changed(quizID: quizID)
        hidden += 1
      }
    }
  }

  /// Quiz's `quizzes`, broadcast: every write of a quiz drops its cached answer keys here.
  public static func answerKeys(feed: any EventFeedClient, quizzes: any QuizSource, logger: Logger) -> EventConsumer {
    EventConsumer(
      feed: feed, mode: .broadcast(.init(reset: { quizzes.invalidateAll() }, apply: { event in quizzes.invalidate(id: event.key) })),
      logger: logger)
  }

  /// Auth's `users`, broadcast: `user.renamed` replaces the cached display name (leaderboards
  /// show the new name at once); a reconnect forgets every cached name.
  public static func names(feed: any EventFeedClient, names: any NameDirectory, logger: Logger) -> EventConsumer {
    EventConsumer(
      feed: feed,
      mode: .broadcast(
        .init(
          reset: { names.forgetAll() },
          apply: { event in
            guard event.type == "user.renamed", let renamed = try? Auth_V1_UserRenamed(serializedBytes: event.payload) else { return }
            names.renamed(userID: renamed.userID, to: renamed.displayName)
          })), logger: logger)
  }
}
