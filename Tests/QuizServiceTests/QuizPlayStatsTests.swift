import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import SQLKit
import ServiceKit
import Storage
import SwiftProtobuf
import TestSupport
import XCTest

@testable import QuizService

/// Play counts and averages from scoring's `attempt.finished` (`PlayStatsFollower`,
/// `QuizPlayStats`) on SQLite and PostgreSQL: each attempt once, whatever the redelivery;
/// not content; the quiz's cached reads dropped on every replica when a play counts.
final class QuizPlayStatsTests: XCTestCase {
  static func finished(_ attempt: String, quiz: String = QuizSeed.demoQuizID, score: Int32, of max: Int32 = 5) -> Scoring_V1_AttemptFinished {
    .with {
      $0.attemptID = attempt
      $0.quizID = quiz
      $0.userID = "u-\(attempt)"
      $0.score = score
      $0.maxScore = max
      $0.finishTime = Google_Protobuf_Timestamp(seconds: 1_700_000_000, nanos: 0)
    }
  }

  static func envelope(_ finished: Scoring_V1_AttemptFinished, offset: Int64, key: String? = nil) throws -> EventEnvelope {
    EventEnvelope(
      offset: offset, type: PlayStatsFollower.finishedType, key: key ?? finished.attemptID, keyVersion: 1,
      payload: try finished.serializedBytes(), timeMs: 1_700_000_000_000)
  }

  func testEachAttemptCountsOnceEvenRedeliveredOrRacedAndAveragesFollow() async throws {
    try await TestDatabases.each { db in
      try await QuizRepositoryTests.migrate(db, seed: true)
      let before = try await db.read { try await QuizRepository().find(id: QuizSeed.demoQuizID, in: $0) }
      XCTAssertEqual(before?.plays, QuizPlays(), "\(db.dialect): a quiz starts unplayed")

      // Through the consumer's own effect, as the durable consumer runs it: a redelivered
      // event (the same attempt again, even at another offset) changes nothing.
      let consumer = PlayStatsFollower.consumer(feed: NoFeed(), database: db, logger: TestDatabases.logger)
      guard case .durable(let durable) = consumer.mode else { return XCTFail("durable") }
      let deliveries = [(Self.finished("a1", score: 5), 1), (Self.finished("a2", score: 3), 2), (Self.finished("a1", score: 5), 3)]
      for (finished, offset) in deliveries {
        let event = try Self.envelope(finished, offset: Int64(offset))
        try await db.transaction { uow in try await durable.apply(event, uow) }
      }
      // Eight deliveries of one attempt at once, each in its own unit of work: one counts.
      let outcomes = try await withThrowingTaskGroup(of: QuizPlayStats.Outcome.self) { group in
        for _ in 0..<8 {
          group.addTask {
            try await db.transaction { uow in try await QuizPlayStats.record(Self.finished("a3", score: 2), nowMs: 1, in: uow) }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      XCTAssertEqual(outcomes.filter { $0 == .counted }.count, 1, "\(db.dialect): \(outcomes)")
      XCTAssertEqual(outcomes.filter { $0 == .duplicate }.count, 7, "\(db.dialect)")

      let after = try await db.read { try await QuizRepository().find(id: QuizSeed.demoQuizID, in: $0) }
      let plays = try XCTUnwrap(after?.plays)
      XCTAssertEqual(plays, QuizPlays(count: 3, scoreSum: 10, maxScoreSum: 15), "\(db.dialect)")
      XCTAssertEqual(plays.averageScore, 10.0 / 3, accuracy: 1e-9)
      XCTAssertEqual(plays.averageFraction, 10.0 / 15, accuracy: 1e-9)
      XCTAssertEqual(after?.etag, before?.etag, "\(db.dialect): plays are not content")
      XCTAssertEqual(after?.updateTimeMs, before?.updateTimeMs, "\(db.dialect)")
      let message = QuizService.message(try XCTUnwrap(after), answerKeys: false)
      XCTAssertEqual(message.playCount, 3)
      XCTAssertEqual(message.averageScore, 10.0 / 3, accuracy: 1e-9)
      XCTAssertEqual(message.averageScoreFraction, 2.0 / 3, accuracy: 1e-9)
      let masked = QuizService.message(try XCTUnwrap(after), answerKeys: false, mask: try QuizReadMask.parse(["title", "playCount"]))
      XCTAssertEqual(masked.playCount, 3, "the read mask takes play_count (lowerCamel too)")
      XCTAssertEqual(masked.averageScore, 0, "and leaves out what it doesn't name")

      // A quiz this database doesn't have: remembered, never counted, not an error.
      let unknown = try await db.transaction { uow in
        try await QuizPlayStats.record(Self.finished("a4", quiz: "qz_elsewhere", score: 1), nowMs: 1, in: uow)
      }
      XCTAssertEqual(unknown, .unknownQuiz)
      let listed = try await db.read { try await QuizRepository().find(ids: [QuizSeed.demoQuizID], load: .row, in: $0) }
      XCTAssertEqual(listed.first?.plays.count, 3, "\(db.dialect): lists read the same columns")
    }
  }

  func testAPayloadThatContradictsItsEnvelopeIsRefused() throws {
    XCTAssertNoThrow(try PlayStatsFollower.decode(try Self.envelope(Self.finished("a1", score: 5), offset: 1)))
    XCTAssertThrowsError(try PlayStatsFollower.decode(try Self.envelope(Self.finished("a1", score: 5), offset: 1, key: "a2")))
    XCTAssertThrowsError(try PlayStatsFollower.decode(try Self.envelope(Self.finished("a1", score: 6, of: 5), offset: 1)))
    XCTAssertThrowsError(try PlayStatsFollower.decode(try Self.envelope(Self.finished("a1", quiz: "", score: 1), offset: 1)))
  }

  /// `--scoring-target` is optional; given, it must be host:port[,host:port].
  func testTheScoringTargetIsOptionalAndCheckedWhenGiven() throws {
    XCTAssertNil(try QuizOptions(layers: ConfigLayers(environment: [:], flags: [:])).scoringTargets)
    let two = try QuizOptions(layers: ConfigLayers(environment: [:], flags: ["scoring-target": "127.0.0.1:7430, 127.0.0.1:7530"]))
    XCTAssertEqual(two.scoringTargets, ["127.0.0.1:7430", "127.0.0.1:7530"])
    let fromEnvironment = try QuizOptions(layers: ConfigLayers(environment: ["QUIZWIRE_SCORING_TARGET": "scoring:7430"], flags: [:]))
    XCTAssertEqual(fromEnvironment.scoringTargets, ["scoring:7430"])
    XCTAssertThrowsError(try QuizOptions(layers: ConfigLayers(environment: [:], flags: ["scoring-target": "no-port"]))) { error in
      XCTAssertEqual((error as? ConfigError)?.key, "scoring-target")
    }
  }

  /// A counted play drops the quiz's entries on another replica's cache once it commits; a
  /// rolled-back one doesn't.
  func testACountedPlayDropsTheQuizFromEveryReplicasCache() async throws {
    try await TestDatabases.each { db in
      try await QuizRepositoryTests.migrate(db, seed: true)
      let other = QuizRepositoryTests.record(1, state: .published)
      try await db.transaction { try await QuizRepository().insert(other, in: $0) }
      let notifier = ChangeNotifier(database: db, logger: TestDatabases.logger)
      let cache = try QuizCache(notifier: notifier, logger: TestDatabases.logger)
      let tasks = [Task { await notifier.run() }, Task { await cache.follow() }]
      defer { for task in tasks { task.cancel() } }
      let ready = await notifier.waitUntilListening(QuizCache.channel)
      XCTAssertTrue(ready)
      for id in [QuizSeed.demoQuizID, other.id] {
        cache.storeQuiz(Quiz_V1_Quiz.with { $0.id = id }, id: id, authorID: "a", mask: "*", ticket: cache.ticket())
      }
      struct Rollback: Error {}
      do {
        try await db.transaction { uow in
          _ = try await QuizPlayStats.record(Self.finished("r1", quiz: other.id, score: 1), nowMs: 1, in: uow)
          throw Rollback()
        }
      } catch is Rollback {}
      let outcome = try await db.transaction { uow in try await QuizPlayStats.record(Self.finished("c1", score: 4), nowMs: 1, in: uow) }
      XCTAssertEqual(outcome, .counted)
      let deadline = ContinuousClock.now + .seconds(5)
      while cache.quiz(id: QuizSeed.demoQuizID, mask: "*") != nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
      XCTAssertNil(cache.quiz(id: QuizSeed.demoQuizID, mask: "*"), "\(db.dialect): the counted play did not invalidate")
      XCTAssertNotNil(cache.quiz(id: other.id, mask: "*"), "\(db.dialect): the rolled-back play invalidated")
      let kept = try await db.read { try await QuizPlayStats.find(quizID: other.id, in: $0) }
      XCTAssertEqual(kept, QuizPlays(), "\(db.dialect): the rolled-back play left nothing")
      notifier.close()
    }
  }
}

/// The consumer is only built here, never run: its effect is driven directly.
private struct NoFeed: EventFeedClient {
  var feed: String { "scoring.attempts" }
  var topic: String { "attempts" }
  func subscribe(
    _ request: Events_V1_SubscribeRequest,
    _ body: @escaping @Sendable (RPCAsyncSequence<Events_V1_SubscribeResponse, any Error>) async throws -> Void
  ) async throws {
    throw CancellationError()
  }
  func acknowledge(_ request: Events_V1_AcknowledgeRequest) async throws {}
}
