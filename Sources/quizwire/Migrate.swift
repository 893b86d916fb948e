import ArgumentParser
import Logging
import ServiceKit
import Storage

struct Migrate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show and apply a service's database migrations (forward-only).",
    discussion: "Settings: --data-dir, --pool-size, --config (QUIZWIRE_DATABASE_URL for PostgreSQL); --dry-run only shows.")

  @Argument(help: "The service.")
  var service: String
  @Argument(parsing: .captureForPassthrough, help: "--dry-run, --data-dir DIR, …")
  var settings: [String] = []

  static let keys =
    [ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG)."), ConfigKey("dry-run", "Only show what would be applied.", kind: .toggle)]
    + StorageOptions.keys

  func run() async throws {
    guard let module = Registry.module(named: service) else {
      throw ValidationError("unknown service \(service); known: \(Registry.names.joined(separator: ", "))")
    }
    guard !module.migrations.isEmpty else { throw ValidationError("\(service) keeps no data: nothing to migrate") }
    if SettingsParser.wantsHelp(settings) {
      print("quizwire migrate \(service)\n\nSettings:\n\(SettingsParser.help(Self.keys))")
      return
    }
    let flags = try SettingsParser.parse(settings, keys: Self.keys)
    let layers = try ConfigLayers(filePath: flags["config"], flags: flags)
    let dryRun = try layers.bool("dry-run", default: false)
    let location = try StorageOptions(layers: layers).location(service: module.name)
    let migrator = try Migrator(service: module.name, migrations: module.migrations, dataMigrations: module.dataMigrations)
    let logger = Logger(label: "quizwire.migrate") { JSONLogHandler(label: $0, level: .warning) }
    try await Database.using(location, logger: logger) { db in
      let plan = try await migrator.plan(db)
      print("database: \(location)")
      for m in migrator.migrations {
        print("  \(m.version) \(m.name): \(plan.applied.contains(m.version) ? "applied" : "pending")")
      }
      if !plan.aheadExpandOnly.isEmpty {
        print("  ahead of this build by expand-only steps (accepted): \(plan.aheadExpandOnly.map(String.init).joined(separator: ", "))")
      }
      for index in plan.pendingIndexes { print("  index \(index): pending (built without blocking)") }
      for data in plan.pendingData { print("  data migration \(data): pending") }
      if dryRun || plan.pending.isEmpty {
        print(plan.pending.isEmpty ? "up to date" : "\(plan.pending.count) pending (dry run: nothing applied)")
      } else {
        let done = try await migrator.migrate(db)
        print("applied: \(done.map(String.init).joined(separator: ", "))")
      }
    }
  }
}
