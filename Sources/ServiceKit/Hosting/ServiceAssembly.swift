import GRPCCore
import Logging
import QuizwireProtos
import ServiceLifecycle
import Storage

/// Turns a `ServiceModule` into a `ServiceHost`: reads the host, storage and remote-auth
/// settings, opens the database, builds the module's handlers and hands the database,
/// clients and migrations to the host's lifecycle. The one composition root of every service.
public enum ServiceAssembly {
  /// Every key a module's `serve` reads, for `--help` and to refuse keys nobody reads.
  public static func keys<M: ServiceModule>(of module: M.Type) -> [ConfigKey] {
    var keys = ServiceHost.Config.keys
    if !M.migrations.isEmpty { keys += StorageOptions.keys + JobOptions.keys + OutboxRetentionJob.keys }
    if M.dependsOn.contains("auth") { keys += RemoteAuthConfig.keys }
    for dependency in M.dependsOn where dependency != "auth" {
      keys.append(ConfigKey("\(dependency)-target", "The \(dependency) service's framed address(es): host:port[,host:port]."))
    }
    for key in M.Options.keys where !keys.contains(where: { $0.name == key.name }) { keys.append(key) }
    return keys
  }

  /// The host defaults of a module: its `up` ports unless configured, then its own tweaks.
  public static func hostDefaults<M: ServiceModule>(of module: M.Type, ports: ServicePorts? = nil) -> ServiceHost.Config {
    var config = ServiceHost.Config()
    if let ports {
      config.framedPort = ports.framed
      config.grpcPort = ports.grpc
      config.adminPort = ports.admin
    }
    M.configureHost(&config)
    return config
  }

  /// The module's host from configuration layers (`quizwire serve <name>`, `up`).
  public static func host<M: ServiceModule>(
    _ module: M.Type, layers: ConfigLayers, ports: ServicePorts? = nil, logSink: LogSink = .standardOutput
  ) async throws -> ServiceHost {
    let config = try ServiceHost.Config(layers: layers, defaults: hostDefaults(of: M.self, ports: ports))
    let level = try Logger.Level(layers: layers)
    let options = try M.Options(layers: layers)
    let storage = M.migrations.isEmpty ? nil : try StorageOptions(layers: layers)
    let remoteAuth = M.dependsOn.contains("auth") ? try RemoteAuthConfig(layers: layers, service: M.name) : nil
    let jobs = M.migrations.isEmpty ? JobOptions() : try JobOptions(layers: layers)
    return try await self.host(
      M.self, options: options, layers: layers, host: config, storage: storage, remoteAuth: remoteAuth,
      logSink: logSink, logLevel: level, jobs: jobs
    ).host
  }

  /// A module's host and database from typed settings (tests, in-process use).
  public static func host<M: ServiceModule>(
    _ module: M.Type, options: M.Options, layers: ConfigLayers? = nil, host config: ServiceHost.Config,
    storage: StorageOptions?, remoteAuth remoteAuthConfig: RemoteAuthConfig?,
    logSink: LogSink = .standardOutput, logLevel: Logger.Level = .info, jobs jobOptions: JobOptions = JobOptions(),
    inspect: (ModuleContext<M.Options>, ModuleParts) -> Void = { _, _ in }
  ) async throws -> (host: ServiceHost, database: Database?) {
    let name = M.protoServices.first ?? M.name
    let logger = Logger(label: name) { JSONLogHandler(label: $0, level: logLevel, sink: logSink) }
    let database: Database?
    if let storage {
      guard !M.migrations.isEmpty else { throw ConfigError(key: "data-dir", origin: nil, reason: "\(M.name) keeps no data") }
      database = try Database(storage.location(service: M.name), logger: logger)
    } else {
      database = nil
    }
    do {
      let remoteAuth = try remoteAuthConfig.map { try RemoteAuth(config: $0) }
      let context = ModuleContext(
        options: options, layers: try layers ?? ConfigLayers(environment: [:]), host: config, database: database, storage: storage,
        remoteAuth: remoteAuth, logger: logger, logSink: logSink, logLevel: logLevel)
      var parts = try await M.make(context)
      inspect(context, parts)

      var lifecycle: [any Service] = []
      var readiness = parts.readiness
      var steps: [BeforeServingStep] = []
      var backgroundMigrations: BackgroundDataMigrations?
      if let database {
        // First in, last out: the database outlives every other piece.
        lifecycle.append(DatabaseLifecycle(database: database))
        readiness.insert(DependencyCheck(name: "database") { try await database.ping() }, at: 0)
        let migrator = try Migrator(service: M.name, migrations: M.migrations, dataMigrations: M.dataMigrations)
        // The module's own backfills run in the background after the schema (their names
        // checked against the static ones here).
        _ = try Migrator(service: M.name, migrations: M.migrations, dataMigrations: M.dataMigrations + parts.dataMigrations)
        let own = parts.dataMigrations.isEmpty ? nil : try Migrator(service: M.name, migrations: M.migrations, dataMigrations: parts.dataMigrations)
        let background = own.map { BackgroundDataMigrations(migrator: $0, database: database, logger: logger) }
        steps.append(
          BeforeServingStep("migrations") {
            let applied = try await migrator.migrate(database)
            if !applied.isEmpty {
              logger.notice("migrations applied", metadata: ["versions": .string(applied.map(String.init).joined(separator: ","))])
            }
            background?.schemaMigrated()
          })
        backgroundMigrations = background
      }
      if let remoteAuth {
        lifecycle.append(remoteAuth.client)
        readiness.append(remoteAuth.verifier.readinessCheck)
      }
      lifecycle += parts.lifecycle
      steps += parts.beforeServing
      if !parts.feeds.isEmpty {
        parts.jobs.append(OutboxRetentionJob.handler(topics: parts.feeds, policy: try OutboxRetentionJob.policy(layers: context.layers)))
        parts.recurringJobs.append(OutboxRetentionJob.recurring)
      }
      // Last in, first out; it starts once migrations and the module's steps are done.
      let jobWorker = self.jobWorker(parts: parts, database: database, options: jobOptions, logger: logger, startImmediately: false)
      if let jobWorker {
        lifecycle.append(jobWorker)
        steps.append(BeforeServingStep("job worker") { jobWorker.start() })
      }
      var services = parts.services
      var policies = M.policies
      var config = config
      var feed: EventFeedService?
      if !parts.feeds.isEmpty {
        guard let database else { throw ConfigError(key: "data-dir", origin: nil, reason: "\(M.name) serves event feeds but keeps no outbox") }
        // The feed's own notifier: appends wake its subscriptions in every replica.
        let notifier = ChangeNotifier(database: database, logger: logger)
        let service = EventFeedService(database: database, topics: parts.feeds, notifier: notifier, logger: logger)
        services.append(service)
        lifecycle.append(ChangeNotifierLifecycle(notifier: notifier))
        policies.merge(EventFeedService.policies)
        // A subscription lasts as long as its consumer asks (an hour by default), then resumes.
        config.methodDeadlines[Events_V1_EventFeed.Method.Subscribe.descriptor] = .seconds(2 * 3600)
        feed = service
      }
      if !parts.eventConsumers.isEmpty {
        // Consumers write to tables the migrations create: they start once those ran.
        let migrated = Latch()
        lifecycle += parts.eventConsumers.map { DeferredStart(service: $0, latch: migrated) }
        steps.append(BeforeServingStep("event consumers") { migrated.fire() })
      }
      // Last in, first out: stops before the clients and the database it uses.
      if let backgroundMigrations { lifecycle.append(backgroundMigrations) }
      var security = parts.security ?? remoteAuth?.security(policies: policies) ?? ServiceHost.Security(policies: policies)
      if feed != nil { security.policies.merge(EventFeedService.policies) }
      let host = try ServiceHost(
        name: name, services: services, security: security, dependencies: readiness, lifecycle: lifecycle,
        beforeServing: steps, config: config, logSink: logSink, logLevel: logLevel)
      if let feed {
        host.metrics.observe(feed: feed)
        host.onDrain { feed.close() }
      }
      for consumer in parts.eventConsumers { host.metrics.observe(consumer: consumer) }
      // Saturation shows on /metrics: the database's connection gates and the module's own.
      if let database { host.metrics.observe(database) }
      for (prefix, gate) in parts.gates { host.metrics.observe(gate, prefix: prefix) }
      for cache in parts.caches { host.metrics.observe(cache: cache) }
      for export in parts.metrics { export(host.metrics) }
      for client in context.clients.all { client.export(to: host.metrics) }
      jobWorker?.useMetrics(host.metrics.factory)
      return (host, database)
    } catch {
      // Nothing runs yet: the database is the only thing open.
      try? await database?.shutdown()
      throw error
    }
  }
}

/// Keeps a database open while its host serves and closes it after the drain.
public struct DatabaseLifecycle: Service {
  public let database: Database
  public init(database: Database) { self.database = database }

  public func run() async throws {
    try? await gracefulShutdown()
    try await self.database.shutdown()
  }
}

/// Runs `service` once `latch` fires; if graceful shutdown comes first, never.
struct DeferredStart: Service {
  let service: any Service
  let latch: Latch

  func run() async throws {
    try? await cancelWhenGracefulShutdown { await self.latch.wait() }
    guard self.latch.isFired, !Task.isCancelled else { return }
    try await self.service.run()
  }
}
