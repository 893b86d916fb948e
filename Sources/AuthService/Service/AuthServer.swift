import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// The auth service's own settings. Secrets (the key-encryption key) come only from the
/// environment or files.
public struct AuthOptions: ServiceOptions {
  public static let keys: [ConfigKey] = [
    ConfigKey("admin-emails", "Comma-separated emails that become admins when they register."),
    ConfigKey("auth-issuer", "The issuer of access tokens (default quizwire-auth)."),
    ConfigKey("auth-audience", "The audience of access tokens (default quizwire)."),
    ConfigKey(
      "internal-clients",
      "Comma-separated services registered as internal OAuth clients at start, secrets in <data-dir>/<name>-client.secret (quizwire up sets this)."),
    ConfigKey("auth-key-encryption-key", "Seals the signing keys at rest (required with PostgreSQL).", kind: .secret),
  ]

  /// Seals signing keys at rest; from QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY(_FILE). Without it a
  /// random key is kept in `<data-dir>/auth-kek.secret` (0600) — fine on one machine.
  public var keyEncryptionKey: Secret?
  package var service = AuthService.Config()
  /// Production parameters unless a test lowers them (not reachable from flags or env).
  package var hashing = ScryptParameters.production
  package var maxConcurrentHashes = 2
  /// Internal OAuth clients made (or re-keyed) at start from `<data-dir>/<name>-client.secret`.
  public var internalClients: [String] = []

  public init() {}

  public init(layers: ConfigLayers) throws {
    self.keyEncryptionKey = try layers.secret("auth-key-encryption-key")
    let admins = layers.string("admin-emails", default: "")
    self.service.adminEmails = Set(admins.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
    self.service.issuer = layers.string("auth-issuer", default: self.service.issuer)
    self.service.audience = layers.string("auth-audience", default: self.service.audience)
    self.internalClients = layers.string("internal-clients", default: "").split(separator: ",")
      .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }
}

/// `auth.v1.AuthService` as a module of the suite.
public enum AuthModule: ServiceModule {
  public static let name = "auth"
  public static let summary = "Users, passwords, tokens, JWKS, API keys and OAuth 2.0."
  public static let protoServices = ["auth.v1.AuthService"]
  public static let defaultPorts = ServicePorts(framed: 7410, grpc: 7411, admin: 7412)
  public static var migrations: [Migration] { AuthMigrations.all }
  public static var policies: AccessPolicies { AuthService.policies }
  /// The outbox's topic: users' public profiles and roles.
  public static let usersTopic = EventTopic(
    name: "users", types: ["user.registered", "user.renamed", "user.roles_changed"], resync: "auth.v1.AuthService/BatchGetUsers")

  public static func configureHost(_ config: inout ServiceHost.Config) {
    config.framed.runHandlersOnEventLoop = false  // scrypt must never run on an event loop
  }

  public static func make(_ context: ModuleContext<AuthOptions>) async throws -> ModuleParts {
    guard let database = context.database, let storage = context.storage else {
      throw ConfigError(key: "data-dir", origin: nil, reason: "the auth service needs its database")
    }
    let options = context.options
    let kek = try options.keyEncryptionKey ?? localKeyEncryptionKey(dataDir: storage.dataDir, dialect: database.dialect)
    let keyRing = KeyRing(db: database, keyEncryptionKey: kek, accessTokenTTL: options.service.accessTokenTTL)
    let hasher = PasswordHasher(parameters: options.hashing, maxConcurrent: options.maxConcurrentHashes, logger: context.logger)
    let service = AuthService(
      config: options.service, db: database,
      hasher: hasher,
      keyRing: keyRing, logger: context.logger, audit: AuditLog(sink: context.logSink))
    let internalClients = try options.internalClients.map { name in
      (name, try LocalSecretFile.readOrCreate(path: LocalSecretFile.clientSecretPath(dataDir: storage.dataDir, service: name), key: "internal-clients"))
    }
    return ModuleParts(
      services: [service],
      // Local API-key checks are cheap reads: no cache, so a revoked key stops at once here.
      security: .init(policies: AuthService.policies, verifier: service.verifier, apiKeys: LocalAPIKeyChecker(service: service)),
      beforeServing: [
        BeforeServingStep("signing key") {
          try await keyRing.ensureKey()
          // A wrong key-encryption key must stop the start, not every sign-in later.
          do {
            try await keyRing.checkKeysOpen()
          } catch {
            throw ConfigError(key: "auth-key-encryption-key", origin: nil, reason: "cannot open the stored signing keys with it (wrong key?)")
          }
        },
        BeforeServingStep("internal clients") {
          for (name, secret) in internalClients {
            try await service.ensureInternalClient(clientID: name, name: name, secret: secret.reveal())
          }
        },
      ],
      gates: [(prefix: "password_hash", gate: hasher.gate)],
      jobs: AuthJobs.handlers(tokens: service.tokens, now: { service.nowMs() }, logger: context.logger), recurringJobs: [AuthJobs.purge],
      feeds: [AuthModule.usersTopic])
  }

  /// The zero-setup key-encryption key: made once, kept next to the SQLite file, owner-only.
  public static func localKeyEncryptionKey(dataDir: String, dialect: SQLDialectKind) throws -> Secret {
    guard dialect == .sqlite else {
      throw ConfigError(
        key: "auth-key-encryption-key", origin: nil,
        reason: "required with PostgreSQL (set QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY or QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY_FILE)")
    }
    return try LocalSecretFile.readOrCreate(
      path: URL(fileURLWithPath: dataDir).appendingPathComponent("auth-kek.secret").path, key: "data-dir")
  }
}

/// The auth service assembled in-process (tests): the host, its database, key ring and
/// handlers. `quizwire serve auth` goes through `ServiceAssembly` the same way.
public struct AuthServer: Sendable {
  public let host: ServiceHost
  public let database: Database
  package let keyRing: KeyRing
  package let service: AuthService

  package static func make(
    options: AuthServerOptions, host config: ServiceHost.Config, logSink: LogSink = .standardOutput,
    logLevel: Logger.Level = .info
  ) async throws -> AuthServer {
    var hostConfig = config
    AuthModule.configureHost(&hostConfig)
    var service: AuthService?
    let (host, database) = try await ServiceAssembly.host(
      AuthModule.self, options: options.auth, host: hostConfig, storage: options.storage, remoteAuth: nil,
      logSink: logSink, logLevel: logLevel
    ) { _, parts in service = parts.services.first as? AuthService }
    guard let service, let database else { throw ConfigError(key: "data-dir", origin: nil, reason: "auth assembled without its database") }
    return AuthServer(host: host, database: database, keyRing: service.keyRing, service: service)
  }
}

/// Storage and auth settings in one value, for in-process use.
public struct AuthServerOptions: Sendable {
  public var dataDir: String
  public var databaseURL: Secret?
  public var poolSize = 10
  public var keyEncryptionKey: Secret?
  package var service = AuthService.Config()
  package var hashing = ScryptParameters.production
  package var maxConcurrentHashes = 2
  public var internalClients: [String] = []

  public init(dataDir: String) { self.dataDir = dataDir }

  var storage: StorageOptions { StorageOptions(dataDir: self.dataDir, databaseURL: self.databaseURL, poolSize: self.poolSize) }
  var auth: AuthOptions {
    var o = AuthOptions()
    o.keyEncryptionKey = self.keyEncryptionKey
    o.service = self.service
    o.hashing = self.hashing
    o.maxConcurrentHashes = self.maxConcurrentHashes
    o.internalClients = self.internalClients
    return o
  }
  public var databaseLocation: DatabaseLocation { self.storage.location(service: AuthModule.name) }
}
