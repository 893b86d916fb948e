import Logging
import ServiceLifecycle
import Storage

extension ServiceAssembly {
  /// The worker for a module's jobs; nil without a database, without handlers, or with
  /// `--no-jobs`.
  static func jobWorker(parts: ModuleParts, database: Database?, options: JobOptions, logger: Logger, startImmediately: Bool) -> JobWorker? {
    guard let database, options.enabled, !parts.jobs.isEmpty else { return nil }
    return JobWorker(
      database: database, handlers: parts.jobs, recurring: parts.recurringJobs, config: options.workerConfig, logger: logger,
      startImmediately: startImmediately)
  }

  /// Every key `quizwire jobs work <service>` reads.
  public static func workerKeys<M: ServiceModule>(of module: M.Type) -> [ConfigKey] {
    var keys = [
      ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG)."),
      ConfigKey("log-level", "trace, debug, info, notice, warning, error or critical (default info)."),
    ]
    keys += StorageOptions.keys + JobOptions.keys.filter { $0.name != "jobs" }
    if M.dependsOn.contains("auth") { keys += RemoteAuthConfig.keys }
    for dependency in M.dependsOn where dependency != "auth" {
      keys.append(ConfigKey("\(dependency)-target", "The \(dependency) service's framed address(es): host:port[,host:port]."))
    }
    for key in M.Options.keys where !keys.contains(where: { $0.name == key.name }) { keys.append(key) }
    return keys
  }

  /// A module's job worker alone (`quizwire jobs work <service>`): its database, migrated
  /// first, and its lifecycle pieces, but no listeners, so workers scale apart from the RPC
  /// replicas. The module is built as `serve` builds it; for a module that depends on auth the
  /// remote-auth settings are used when `auth-target` is given (a module that needs them fails
  /// naming it otherwise). Run it in a `ServiceGroup`; graceful shutdown stops the worker first
  /// (the job it is running finishes), then the rest.
  public static func standaloneWorker<M: ServiceModule>(
    _ module: M.Type, layers: ConfigLayers, logSink: LogSink = .standardOutput
  ) async throws -> [any Service] {
    guard !M.migrations.isEmpty else { throw ConfigError(key: "data-dir", origin: nil, reason: "\(M.name) keeps no data: it has no jobs") }
    let level = try Logger.Level(layers: layers)
    let options = try M.Options(layers: layers)
    let storage = try StorageOptions(layers: layers)
    var jobOptions = try JobOptions(layers: layers)
    jobOptions.enabled = true
    let name = M.protoServices.first ?? M.name
    let logger = Logger(label: name) { JSONLogHandler(label: $0, level: level, sink: logSink) }
    let remoteAuthConfig =
      M.dependsOn.contains("auth") && layers.raw("auth-target") != nil ? try RemoteAuthConfig(layers: layers, service: M.name) : nil
    let database = try Database(storage.location(service: M.name), logger: logger)
    do {
      let migrator = try Migrator(service: M.name, migrations: M.migrations, dataMigrations: M.dataMigrations)
      let remoteAuth = try remoteAuthConfig.map { try RemoteAuth(config: $0) }
      let context = ModuleContext(
        options: options, layers: layers, host: hostDefaults(of: M.self), database: database, storage: storage, remoteAuth: remoteAuth,
        logger: logger, logSink: logSink, logLevel: level)
      let parts = try await M.make(context)
      guard let worker = self.jobWorker(parts: parts, database: database, options: jobOptions, logger: logger, startImmediately: false)
      else {
        throw ConfigError(key: "jobs", origin: nil, reason: "\(M.name) has no job handlers")
      }
      let start = MigrateThenStart(migrator: migrator, database: database, worker: worker, logger: logger)
      let clients: [any Service] = remoteAuth.map { [$0.client] } ?? []
      return [DatabaseLifecycle(database: database)] + clients + parts.lifecycle + [start, worker]
    } catch {
      try? await database.shutdown()
      throw error
    }
  }
}

/// Applies pending migrations (as `serve` does), then lets the worker start; waits for the
/// shutdown so the group does not end early.
private struct MigrateThenStart: Service {
  let migrator: Migrator
  let database: Database
  let worker: JobWorker
  let logger: Logger

  func run() async throws {
    let applied = try await self.migrator.migrate(self.database)
    if !applied.isEmpty {
      self.logger.notice("migrations applied", metadata: ["versions": .string(applied.map(String.init).joined(separator: ","))])
    }
    self.worker.start()
    try? await gracefulShutdown()
  }
}
