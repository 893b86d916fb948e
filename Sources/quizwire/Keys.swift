import ArgumentParser
import AuthService
import Logging
import ServiceKit
import Storage

struct Keys: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Manage the auth service's signing keys.", subcommands: [Rotate.self])

  struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Make a new signing key; old keys keep verifying until their tokens expire.",
      discussion: "Settings: --data-dir, --pool-size, --config; QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY(_FILE) with PostgreSQL.")
    @Argument(parsing: .captureForPassthrough, help: "--data-dir DIR, …")
    var settings: [String] = []

    func run() async throws {
      let keys =
        [ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG).")] + StorageOptions.keys
        + AuthOptions.keys.filter { $0.kind == .secret }
      let flags = try SettingsParser.parse(settings, keys: keys)
      let layers = try ConfigLayers(filePath: flags["config"], flags: flags)
      let storage = try StorageOptions(layers: layers)
      let options = try AuthOptions(layers: layers)
      let logger = Logger(label: "quizwire.keys") { JSONLogHandler(label: $0, level: .warning) }
      try await Database.using(storage.location(service: AuthModule.name), logger: logger) { db in
        try await Migrator(service: AuthModule.name, migrations: AuthModule.migrations).migrate(db)
        let kek = try options.keyEncryptionKey ?? AuthModule.localKeyEncryptionKey(dataDir: storage.dataDir, dialect: db.dialect)
        let kid = try await KeyRing(db: db, keyEncryptionKey: kek).rotate()
        print(#"{"kid":"\#(kid)"}"#)
      }
    }
  }
}
