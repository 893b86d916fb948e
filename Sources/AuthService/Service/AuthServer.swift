import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// Everything `quizwire serve auth` needs besides the host's listeners.
public struct AuthServerOptions: Sendable {
  /// Where the SQLite file (and, without an explicit key, the key-encryption key file) live.
  public var dataDir: String
  /// `postgres://…` to use PostgreSQL instead of SQLite (a secret: it may hold a password).
  public var databaseURL: Secret?
  public var poolSize = 10
  /// Seals signing keys at rest; from QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY(_FILE). Without it a
  /// random key is kept in `<data-dir>/auth-kek.secret` (0600) — fine on one machine.
  public var keyEncryptionKey: Secret?
  public var service = AuthService.Config()
  /// Production parameters unless a test lowers them (not reachable from flags or env).
  public var hashing = ScryptParameters.production
  public var maxConcurrentHashes = 2

  public init(dataDir: String) { self.dataDir = dataDir }

  public var databaseLocation: DatabaseLocation {
    if let url = self.databaseURL { return .postgres(url: url.reveal(), poolSize: self.poolSize) }
    return .sqlite(path: URL(fileURLWithPath: self.dataDir).appendingPathComponent("auth.sqlite").path)
  }
}

/// The auth service assembled: database opened and migrated, signing key present, host
/// ready to run.
public struct AuthServer: Sendable {
  public let host: ServiceHost
  public let database: Database
  public let keyRing: KeyRing
  public let service: AuthService

  public static func make(options: AuthServerOptions, host config: ServiceHost.Config, logSink: LogSink = .standardOutput,
                          logLevel: Logger.Level = .info) async throws -> AuthServer {
    let logger = Logger(label: "auth.v1.AuthService") { JSONLogHandler(label: $0, level: logLevel, sink: logSink) }
    let database = try Database(options.databaseLocation, logger: logger)
    do {
      let applied = try await Migrator(service: AuthMigrations.service, migrations: AuthMigrations.all).migrate(database)
      if !applied.isEmpty { logger.notice("migrations applied", metadata: ["versions": .string(applied.map(String.init).joined(separator: ","))]) }
      let kek = try options.keyEncryptionKey ?? Self.localKeyEncryptionKey(dataDir: options.dataDir, database: database)
      let keyRing = KeyRing(db: database, keyEncryptionKey: kek, accessTokenTTL: options.service.accessTokenTTL)
      try await keyRing.ensureKey()
      let service = AuthService(
        config: options.service, db: database,
        hasher: PasswordHasher(parameters: options.hashing, maxConcurrent: options.maxConcurrentHashes),
        keyRing: keyRing, logger: logger)
      // A wrong key-encryption key must stop the start, not every sign-in later.
      do {
        try await keyRing.checkKeysOpen()
      } catch {
        throw ConfigError(key: "auth-key-encryption-key", origin: nil, reason: "cannot open the stored signing keys with it (wrong key?)")
      }
      // Local API-key checks are cheap reads: no cache, so a revoked key stops at once here.
      let host = try ServiceHost(
        name: "auth.v1.AuthService", services: [service],
        security: .init(policies: AuthService.policies, verifier: service.verifier, apiKeys: LocalAPIKeyChecker(service: service)),
        dependencies: [DependencyCheck(name: "database") { try await database.ping() }],
        config: config, logSink: logSink, logLevel: logLevel)
      return AuthServer(host: host, database: database, keyRing: keyRing, service: service)
    } catch {
      try? await database.shutdown()
      throw error
    }
  }

  /// The zero-setup key-encryption key: made once, kept next to the SQLite file, owner-only.
  public static func localKeyEncryptionKey(dataDir: String, database: Database) throws -> Secret {
    guard database.dialect == .sqlite else {
      throw ConfigError(key: "auth-key-encryption-key", origin: nil,
                        reason: "required with PostgreSQL (set QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY or QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY_FILE)")
    }
    let path = URL(fileURLWithPath: dataDir).appendingPathComponent("auth-kek.secret").path
    if FileManager.default.fileExists(atPath: path) {
      // Never replace an existing key file: the stored signing keys would be lost with it.
      guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
            !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
        throw ConfigError(key: "data-dir", origin: nil, reason: "\(path) exists but is unreadable or empty; restore it or remove the data folder")
      }
      return Secret(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    let secret = Secrets.random()
    guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
      throw ConfigError(key: "data-dir", origin: nil, reason: "cannot write \(path)")
    }
    return Secret(secret)
  }
}

/// How other services verify users: the auth service's JWKS over a client.
public struct AuthServiceJWKSSource<Transport: ClientTransport>: JWKSSource {
  let client: Auth_V1_AuthService.Client<Transport>
  public init(client: GRPCClient<Transport>) { self.client = Auth_V1_AuthService.Client(wrapping: client) }
  public func fetchJWKS() async throws -> String {
    try await self.client.getJWKS(.init(), options: .defaults).jwksJson
  }
}

/// How other services check API keys: the auth service's CheckAPIKey, called with the
/// service's own client-credentials token. Wrap it in `CachedAPIKeyChecker`.
public struct AuthServiceAPIKeyChecker<Transport: ClientTransport>: APIKeyChecker {
  let client: Auth_V1_AuthService.Client<Transport>
  let token: @Sendable () async throws -> String

  public init(client: GRPCClient<Transport>, token: @escaping @Sendable () async throws -> String) {
    self.client = Auth_V1_AuthService.Client(wrapping: client)
    self.token = token
  }

  public func principal(forAPIKey key: String) async throws -> Principal? {
    let answer = try await self.client.checkAPIKey(.with { $0.key = key }, metadata: ["authorization": "Bearer \(try await self.token())"])
    guard answer.valid else { return nil }
    // Scopes, not the owner's roles (see LocalAPIKeyChecker).
    return Principal(
      kind: .apiKey, subject: answer.keyID, roles: [], scopes: Set(answer.scopes),
      rateLimit: answer.rateLimitPerSecond > 0 ? RateLimit(perSecond: answer.rateLimitPerSecond, burst: max(1, answer.rateLimitPerSecond * 2)) : nil)
  }
}
