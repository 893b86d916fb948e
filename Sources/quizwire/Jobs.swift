import ArgumentParser
import Foundation
import Logging
import ServiceKit
import ServiceLifecycle
import Storage

/// `quizwire jobs list|retry|work <service>`: a service's job queue (docs/services.md, "Jobs").
struct Jobs: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show, retry and run a service's background jobs.",
    subcommands: [List.self, Retry.self, Work.self])

  static let storageKeys = [ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG).")] + StorageOptions.keys

  /// The module, its storage settings and the database, for `list` and `retry`.
  static func withQueue<T: Sendable>(
    _ service: String, settings: [String], extraKeys: [ConfigKey] = [], _ body: (Database, ConfigLayers) async throws -> T
  ) async throws -> T {
    guard let module = Registry.module(named: service) else {
      throw ValidationError("unknown service \(service); known: \(Registry.names.joined(separator: ", "))")
    }
    guard !module.migrations.isEmpty else { throw ValidationError("\(service) keeps no data: it has no jobs") }
    let flags = try SettingsParser.parse(settings, keys: Self.storageKeys + extraKeys)
    let layers = try ConfigLayers(filePath: flags["config"], flags: flags)
    let location = try StorageOptions(layers: layers).location(service: module.name)
    let migrator = try Migrator(service: module.name, migrations: module.migrations, dataMigrations: module.dataMigrations)
    let logger = Logger(label: "quizwire.jobs") { JSONLogHandler(label: $0, level: .warning) }
    return try await Database.using(location, logger: logger) { db in
      guard try await migrator.plan(db).pending.isEmpty else {
        throw ValidationError("\(service)'s database has pending migrations: run `quizwire migrate \(service)` first")
      }
      return try await body(db, layers)
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Jobs by kind (due, scheduled, running, dead) and the dead ones with their last error.",
      discussion: "Settings: --data-dir, --pool-size, --config, --limit (QUIZWIRE_DATABASE_URL for PostgreSQL). Payloads are never shown.")

    @Argument(help: "The service.") var service: String
    @Argument(parsing: .captureForPassthrough, help: "--data-dir DIR, --limit N, …") var settings: [String] = []

    func run() async throws {
      let limitKey = ConfigKey("limit", "Most dead jobs shown (default 50).")
      if SettingsParser.wantsHelp(settings) {
        print("quizwire jobs list \(service)\n\nSettings:\n\(SettingsParser.help(Jobs.storageKeys + [limitKey]))")
        return
      }
      try await Jobs.withQueue(service, settings: settings, extraKeys: [limitKey]) { db, layers in
        let limit = try layers.int("limit", default: 50, in: 1...10_000)
        let (counts, dead) = try await db.read { uow in
          (try await JobQueue.counts(in: uow), try await JobQueue.dead(limit: limit, in: uow))
        }
        print("database: \(db.location)")
        if counts.isEmpty { print("no jobs") }
        for c in counts {
          print("  \(c.kind): due \(c.due), scheduled \(c.scheduled), running \(c.running), dead \(c.dead)")
        }
        if !dead.isEmpty { print("dead jobs (quizwire jobs retry \(service) <id>):") }
        for job in dead {
          let created = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(job.createdMs) / 1000))
          print(
            "  \(job.id) \(job.kind) attempts \(job.attempts)/\(job.maxAttempts) created \(created) payload \(job.payload.count) bytes: \(job.lastError ?? "")"
          )
        }
      }
    }
  }

  struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Put a dead job back in the queue with fresh attempts, due now.",
      discussion: "Settings: --data-dir, --pool-size, --config (QUIZWIRE_DATABASE_URL for PostgreSQL).")

    @Argument(help: "The service.") var service: String
    @Argument(help: "The dead job's id (quizwire jobs list).") var id: Int64
    @Argument(parsing: .captureForPassthrough, help: "--data-dir DIR, …") var settings: [String] = []

    func run() async throws {
      let retried = try await Jobs.withQueue(service, settings: settings) { db, _ in
        try await db.transaction { uow in try await JobQueue.retry(id: id, in: uow) }
      }
      guard retried else { throw ValidationError("\(service) has no dead job \(id)") }
      print("job \(id) is due again")
    }
  }

  struct Work: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Run only a service's job worker against its database (no listeners); SIGTERM stops it gracefully.",
      discussion: """
        Scale job workers apart from RPC replicas: run `quizwire serve <service> --no-jobs` for the
        replicas and as many `quizwire jobs work <service>` as the jobs need. Settings as for serve:
        --data-dir, --jobs-concurrency, --jobs-visibility SECONDS, … (QUIZWIRE_DATABASE_URL for PostgreSQL).
        """)

    @Argument(help: "The service.") var service: String
    @Argument(parsing: .captureForPassthrough, help: "--jobs-concurrency N, --jobs-visibility SECONDS, …") var settings: [String] = []

    func run() async throws {
      guard let module = Registry.module(named: service) else {
        throw ValidationError("unknown service \(service); known: \(Registry.names.joined(separator: ", "))")
      }
      let keys = ServiceAssembly.workerKeys(of: module)
      if SettingsParser.wantsHelp(settings) {
        print("quizwire jobs work \(module.name)\n\nSettings:\n\(SettingsParser.help(keys))")
        return
      }
      let flags = try SettingsParser.parse(settings, keys: keys)
      let layers = try ConfigLayers(filePath: flags["config"], flags: flags)
      let services = try await ServiceAssembly.standaloneWorker(module, layers: layers)
      let logger = Logger(label: "quizwire") { JSONLogHandler(label: $0, level: .critical) }
      let group = ServiceGroup(
        configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
      try await group.run()
    }
  }
}
