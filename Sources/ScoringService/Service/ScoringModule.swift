import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// `scoring.v1.ScoringService` as a module of the suite: calls auth (tokens, names) and quiz
/// (questions and answer keys) over the framed wire with its own client-credentials token.
public enum ScoringModule: ServiceModule {
  public static let name = "scoring"
  public static let summary = "Attempts over client and bidi streams, event-sourced scores, live leaderboards."
  public static let protoServices = ["scoring.v1.ScoringService"]
  public static let defaultPorts = ServicePorts(framed: 7430, grpc: 7431, admin: 7432)
  public static let dependsOn = ["auth", "quiz"]
  public static var migrations: [Migration] { ScoringMigrations.all }
  public static var policies: AccessPolicies { ScoringService.policies }

  public static func configureHost(_ config: inout ServiceHost.Config) {
    typealias M = Scoring_V1_ScoringService.Method
    // A whole quiz is played on one stream; watchers watch for as long as they like.
    config.methodDeadlines[M.Play.descriptor] = .seconds(3 * 3600)
    config.methodDeadlines[M.SubmitAnswers.descriptor] = .seconds(3600)
    config.methodDeadlines[M.WatchLeaderboard.descriptor] = .seconds(24 * 3600)
  }

  public static func make(_ context: ModuleContext<NoOptions>) async throws -> ModuleParts {
    guard let database = context.database else {
      throw ConfigError(key: "data-dir", origin: nil, reason: "the scoring service needs its database")
    }
    guard let remoteAuth = context.remoteAuth else {
      throw ConfigError(key: "auth-target", origin: nil, reason: "the scoring service needs the auth service")
    }
    typealias Q = Quiz_V1_QuizService.Method
    let quizClient = try context.client(for: "quiz", idempotentMethods: [Q.GetQuiz.descriptor, Q.GetAnswerKey.descriptor])
    let quizzes = RemoteQuizSource(client: quizClient.client)
    let names = RemoteNameDirectory(client: remoteAuth.client.client, credentials: remoteAuth.credentials)
    let reader = LeaderboardReader(db: database, names: names)
    let hub = LeaderboardHub(load: { try await reader.top(quizID: $0) }, present: { await reader.entries($0, offset: $1) })
    let counters = PlayCounters(db: database, logger: context.logger)
    let service = ScoringService(
      db: database, quizzes: quizzes, names: names, hub: hub, counters: counters,
      audit: AuditLog(sink: context.logSink), logger: context.logger)

    // Answer keys cached per etag are dropped on every write of the quiz; deleted quizzes'
    // boards are hidden; renamed players' names follow (quiz's and auth's feeds).
    let quizFeed = RemoteEventFeed(producer: "quiz", topic: "quizzes", client: quizClient.client, credentials: remoteAuth.credentials)
    let usersFeed = RemoteEventFeed(producer: "auth", topic: "users", client: remoteAuth.client.client, credentials: remoteAuth.credentials)
    let consumers = [
      ScoringConsumers.answerKeys(feed: quizFeed, quizzes: quizzes, logger: context.logger),
      ScoringConsumers.deletions(feed: quizFeed, database: database, quizzes: quizzes, hub: hub, logger: context.logger),
      ScoringConsumers.names(feed: usersFeed, names: names, logger: context.logger),
    ]
    // Watchers on every replica follow the projection's versions (NOTIFY/LISTEN on PostgreSQL).
    let notifier = ChangeNotifier(database: database, logger: context.logger)
    let boardChanges = try notifier.subscribe(channel: LeaderboardRepository.channel)
    let following = ChangeNotifierLifecycle(notifier: notifier, followers: [{ await hub.follow(boardChanges) }])
    return ModuleParts(
      services: [service], lifecycle: [quizClient, following, counters], caches: [quizzes.keys, quizzes.summaries, hub],
      jobs: ScoringJobs.handlers(hub: hub, counters: counters),
      recurringJobs: ScoringJobs.recurring,
      feeds: [Self.attemptsTopic], eventConsumers: consumers, metrics: [{ counters.export(to: $0) }])
  }

  /// The outbox's topic: finished attempts (the quiz service counts plays from it).
  public static let attemptsTopic = EventTopic(
    name: "attempts", types: [AttemptRepository.finishedEventType], resync: "scoring.v1.ScoringService/GetLeaderboard")
}
