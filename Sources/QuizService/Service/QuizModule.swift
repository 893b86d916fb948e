import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// The quiz service's own settings. The page-token key is a secret: only from the environment
/// or a file.
public struct QuizOptions: ServiceOptions {
  public static let keys: [ConfigKey] = [
    ConfigKey(
      "quiz-page-token-key",
      "Signs list page tokens; every replica needs the same (required with PostgreSQL; with SQLite a random key is kept in <data-dir>/quiz-page-token.secret).",
      kind: .secret),
    ConfigKey("quiz-cache-entries", "Most entries the read cache holds (default 10000)."),
    ConfigKey("quiz-cache-mb", "Most megabytes the read cache holds (default 64)."),
    ConfigKey("quiz-cache-ttl", "Seconds a cached read lives at most (default 30)."),
    ConfigKey(
      "scoring-target",
      "The scoring service's framed address(es), host:port[,host:port]: play counts and averages follow its attempt.finished events (without it they stay 0)."
    ),
  ]

  /// From QUIZWIRE_QUIZ_PAGE_TOKEN_KEY(_FILE).
  public var pageTokenKey: Secret?
  public var cacheLimits = ResponseCache<QuizCacheKey, QuizCacheValue>.Limits()
  /// The scoring service's replicas; nil: no play statistics are followed. Not a dependency
  /// (`dependsOn`): scoring calls quiz, so quiz must start, and `up --only auth,quiz` run,
  /// without it.
  public var scoringTargets: [String]?

  public init() {}

  public init(layers: ConfigLayers) throws {
    self.pageTokenKey = try layers.secret("quiz-page-token-key")
    self.cacheLimits.maxEntries = try layers.int("quiz-cache-entries", default: self.cacheLimits.maxEntries, in: 1...10_000_000)
    self.cacheLimits.maxBytes = try layers.int("quiz-cache-mb", default: self.cacheLimits.maxBytes >> 20, in: 1...65_536) << 20
    self.cacheLimits.ttl = .seconds(try layers.int("quiz-cache-ttl", default: 30, in: 1...86_400))
    if let (text, origin) = layers.raw("scoring-target") {
      do {
        self.scoringTargets = try ServiceTargets.parse(text, key: "scoring-target")
      } catch let error as ConfigError {
        throw ConfigError(key: "scoring-target", origin: origin, reason: error.reason)
      }
    }
  }
}

/// `quiz.v1.QuizService` as a module of the suite.
public enum QuizModule: ServiceModule {
  public static let name = "quiz"
  public static let summary = "Quizzes and questions: lists, filters, etags, caching, import and export streams."
  public static let protoServices = ["quiz.v1.QuizService"]
  public static let defaultPorts = ServicePorts(framed: 7420, grpc: 7421, admin: 7422)
  public static let dependsOn = ["auth"]
  public static var migrations: [Migration] { QuizMigrations.all }
  public static var dataMigrations: [DataMigration] { [QuizSeed.demoQuiz] }
  public static var policies: AccessPolicies { QuizService.policies }

  public static func configureHost(_ config: inout ServiceHost.Config) {
    // An export of every quiz streams for as long as the client reads.
    config.methodDeadlines[Quiz_V1_QuizService.Method.ExportQuizzes.descriptor] = .seconds(3600)
  }

  public static func make(_ context: ModuleContext<QuizOptions>) async throws -> ModuleParts {
    guard let database = context.database, let storage = context.storage else {
      throw ConfigError(key: "data-dir", origin: nil, reason: "the quiz service needs its database")
    }
    let secret = try context.options.pageTokenKey ?? localPageTokenKey(dataDir: storage.dataDir, dialect: database.dialect)
    let tokens: PageTokenCodec
    do {
      tokens = try PageTokenCodec(secret: secret.reveal())
    } catch {
      throw ConfigError(key: "quiz-page-token-key", origin: nil, reason: "\(error)")
    }
    // Invalidation across replicas: PostgreSQL NOTIFY/LISTEN, in-process on SQLite.
    let notifier = ChangeNotifier(database: database, logger: context.logger)
    let cache = try QuizCache(limits: context.options.cacheLimits, notifier: notifier, logger: context.logger)
    guard let remoteAuth = context.remoteAuth else {
      throw ConfigError(key: "auth-target", origin: nil, reason: "the quiz service reads authors' names from the auth service")
    }
    // Authors' display names: auth's BatchGetUsers, on the remote-auth client the host runs.
    let authors = RemoteAuthorDirectory(client: remoteAuth.client.client, credentials: remoteAuth.credentials)
    let service = QuizService(
      db: database, tokens: tokens, authors: authors, logger: context.logger, audit: AuditLog(sink: context.logSink), cache: cache)
    // Renames follow through auth's "users" feed, read as this service's own principal.
    let usersFeed = RemoteEventFeed(producer: "auth", topic: "users", client: remoteAuth.client.client, credentials: remoteAuth.credentials)
    let authorNames = AuthorNameFollower.consumer(
      feed: usersFeed, database: database, directory: authors, logger: context.logger)
    var parts = ModuleParts(
      services: [QuizRPCs(service)], lifecycle: [ChangeNotifierLifecycle(notifier: notifier, followers: [{ await cache.follow() }])],
      caches: [cache.store], jobs: QuizJobs.handlers(),
      dataMigrations: [AuthorNameBackfill(directory: authors).migration], feeds: [Self.quizzesTopic], eventConsumers: [authorNames])
    if let playStats = try Self.playStatsConsumer(context, database: database, credentials: remoteAuth.credentials) {
      // The assembly starts consumers after the lifecycle and stops them first: the client outlives it.
      parts.lifecycle.append(playStats.client)
      parts.eventConsumers.append(playStats.consumer)
    }
    return parts
  }

  /// Play statistics follow scoring's `attempts` over a client to `--scoring-target` (read as
  /// this service's principal); without the setting, none (said once in the log). Scoring
  /// starts after quiz (it calls quiz), so the consumer keeps retrying until scoring answers.
  static func playStatsConsumer(
    _ context: ModuleContext<QuizOptions>, database: Database, credentials: ClientCredentialsToken?
  ) throws -> (client: ServiceClient, consumer: EventConsumer)? {
    guard let targets = context.options.scoringTargets else {
      context.logger.info("no --scoring-target: play counts and average scores are not followed")
      return nil
    }
    let client = try ServiceClient(ServiceClientConfig(replicas: targets), interceptors: [])
    let feed = RemoteEventFeed(producer: "scoring", topic: PlayStatsFollower.topic, client: client.client, credentials: credentials)
    return (client, PlayStatsFollower.consumer(feed: feed, database: database, logger: context.logger))
  }

  /// The outbox's topic: every write of a quiz.
  public static let quizzesTopic = EventTopic(
    name: "quizzes", types: ["quiz.changed", "quiz.published", "quiz.deleted"], resync: "quiz.v1.QuizService/BatchGetQuizzes")

  /// The zero-setup page-token key: made once, kept next to the SQLite file, owner-only. With
  /// PostgreSQL replicas may run on several machines, so the key must be given.
  public static func localPageTokenKey(dataDir: String, dialect: SQLDialectKind) throws -> Secret {
    guard dialect == .sqlite else {
      throw ConfigError(
        key: "quiz-page-token-key", origin: nil,
        reason: "required with PostgreSQL: every replica must sign page tokens alike (set QUIZWIRE_QUIZ_PAGE_TOKEN_KEY or QUIZWIRE_QUIZ_PAGE_TOKEN_KEY_FILE)")
    }
    return try LocalSecretFile.readOrCreate(path: URL(fileURLWithPath: dataDir).appendingPathComponent("quiz-page-token.secret").path, key: "data-dir")
  }
}
