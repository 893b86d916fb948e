import ArgumentParser
import AuthService
import Foundation
import Logging
import ServiceKit
import Storage

/// Options of the auth service (besides the host's): storage and its bootstrap admin.
/// Secrets (database URL, key-encryption key) come only from the environment or files.
struct AuthOptions: ParsableArguments {
  @Option(help: "Folder for the SQLite database and local key file (default ./.quizwire).")
  var dataDir: String?
  @Option(help: "PostgreSQL connections per process when QUIZWIRE_DATABASE_URL is set (default 10).")
  var poolSize: Int?
  @Option(help: "Comma-separated emails that become admins when they register.")
  var adminEmails: String?

  func resolve(_ layers: ConfigLayers) throws -> AuthServerOptions {
    var options = AuthServerOptions(dataDir: layers.string("data-dir", flag: self.dataDir, default: "./.quizwire"))
    options.poolSize = try layers.int("pool-size", flag: self.poolSize, default: 10, in: 1...1000)
    options.databaseURL = try layers.secret("database-url")
    if let url = options.databaseURL?.reveal(), !(url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")) {
      throw ConfigError(key: "database-url", origin: .environment, reason: "must start with postgres:// (value not shown)")
    }
    options.keyEncryptionKey = try layers.secret("auth-key-encryption-key")
    let admins = layers.string("admin-emails", flag: self.adminEmails, default: "")
    options.service.adminEmails = Set(admins.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
    options.service.issuer = layers.string("auth-issuer", flag: nil, default: options.service.issuer)
    options.service.audience = layers.string("auth-audience", flag: nil, default: options.service.audience)
    return options
  }
}

struct ServeAuth: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "auth", abstract: "Serve auth.v1.AuthService (users, tokens, JWKS, API keys, OAuth).")

  @OptionGroup var options: HostOptions
  @OptionGroup var auth: AuthOptions

  func run() async throws {
    let (config, level, layers) = try options.resolve()
    let server = try await AuthServer.make(options: try auth.resolve(layers), host: config, logLevel: level)
    do {
      try await runHosts([server.host])
    } catch {
      try? await server.database.shutdown()
      throw error
    }
    try await server.database.shutdown()
  }
}

struct Migrate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show and apply a service's database migrations (forward-only).")

  @Argument(help: "The service: auth.")
  var service: String
  @Flag(help: "Only show what would be applied.")
  var dryRun = false
  @Option(help: "JSON config file (also QUIZWIRE_CONFIG).")
  var config: String?
  @OptionGroup var auth: AuthOptions

  func run() async throws {
    guard service == "auth" else { throw ValidationError("unknown service \(service); known: auth") }
    let layers = try ConfigLayers(filePath: self.config)
    let options = try auth.resolve(layers)
    let logger = Logger(label: "quizwire.migrate") { JSONLogHandler(label: $0, level: .warning) }
    let db = try Database(options.databaseLocation, logger: logger)
    do {
      let migrator = try Migrator(service: AuthMigrations.service, migrations: AuthMigrations.all)
      let plan = try await migrator.plan(db)
      print("database: \(options.databaseLocation)")
      for m in migrator.migrations {
        print("  \(m.version) \(m.name): \(plan.applied.contains(m.version) ? "applied" : "pending")")
      }
      if dryRun || plan.pending.isEmpty {
        print(plan.pending.isEmpty ? "up to date" : "\(plan.pending.count) pending (dry run: nothing applied)")
      } else {
        let done = try await migrator.migrate(db)
        print("applied: \(done.map(String.init).joined(separator: ", "))")
      }
      try await db.shutdown()
    } catch {
      try? await db.shutdown()
      throw error
    }
  }
}

struct Keys: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Manage the auth service's signing keys.", subcommands: [Rotate.self])

  struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Make a new signing key; old keys keep verifying until their tokens expire.")
    @Option(help: "JSON config file (also QUIZWIRE_CONFIG).")
    var config: String?
    @OptionGroup var auth: AuthOptions

    func run() async throws {
      let layers = try ConfigLayers(filePath: self.config)
      let options = try auth.resolve(layers)
      let logger = Logger(label: "quizwire.keys") { JSONLogHandler(label: $0, level: .warning) }
      let db = try Database(options.databaseLocation, logger: logger)
      do {
        try await Migrator(service: AuthMigrations.service, migrations: AuthMigrations.all).migrate(db)
        let kek = try options.keyEncryptionKey ?? AuthServer.localKeyEncryptionKey(dataDir: options.dataDir, database: db)
        let kid = try await KeyRing(db: db, keyEncryptionKey: kek).rotate()
        print(#"{"kid":"\#(kid)"}"#)
        try await db.shutdown()
      } catch {
        try? await db.shutdown()
        throw error
      }
    }
  }
}
