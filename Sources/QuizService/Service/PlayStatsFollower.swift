import Foundation
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// Keeps `Quiz.play_count`, `average_score` and `average_score_fraction` current: a durable
/// consumer (group `quiz.play-stats`) of the scoring service's topic `attempts`. Each
/// `attempt.finished` is counted on its quiz in the same unit of work as the consumer's
/// offset and the attempt's dedupe row (`QuizPlayStats`), so an attempt counts once however
/// often it is delivered, and the quiz's cached reads are dropped on every replica.
public enum PlayStatsFollower {
  public static let group = "quiz.play-stats"
  /// The producer's topic and event type (`ScoringModule.attemptsTopic`,
  /// `AttemptRepository.finishedEventType`; named here so quiz needn't link scoring).
  public static let topic = "attempts"
  public static let finishedType = "attempt.finished"

  public static func consumer(
    feed: any EventFeedClient, database: Database, logger: Logger, config: EventConsumer.Config = EventConsumer.Config()
  ) -> EventConsumer {
    let durable = EventConsumer.Durable(
      group: Self.group, database: database,
      apply: { event, uow in
        guard event.type == Self.finishedType else { return }
        let finished = try Self.decode(event)
        try await QuizPlayStats.record(finished, nowMs: Int64(Date().timeIntervalSince1970 * 1000), in: uow)
      },
      resync: {
        // No scoring RPC tells every attempt (GetLeaderboard keeps each user's best only), so
        // nothing can be rebuilt: plays purged before this group read them stay uncounted.
        // Retention keeps unread events for 30 days, so only a consumer stopped that long
        // gets here.
        logger.warning(
          "play statistics resumed from scoring's head: attempts finished while this consumer was behind the feed's retention are not counted"
        )
      })
    return EventConsumer(feed: feed, mode: .durable(durable), config: config, logger: logger)
  }

  /// The payload, checked against its envelope: a contradiction is parked, never counted.
  static func decode(_ event: EventEnvelope) throws -> Scoring_V1_AttemptFinished {
    let finished = try Scoring_V1_AttemptFinished(serializedBytes: event.payload)
    guard finished.attemptID == event.key, !finished.quizID.isEmpty else {
      throw EventPayloadError(description: "attempt.finished \(event.offset): payload attempt \(finished.attemptID) is not the event key")
    }
    guard finished.score >= 0, finished.maxScore >= 0, finished.score <= finished.maxScore else {
      throw EventPayloadError(
        description: "attempt.finished \(event.offset): score \(finished.score) of \(finished.maxScore) is out of range")
    }
    return finished
  }
}
