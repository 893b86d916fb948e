import Foundation
import Logging
import Storage

extension ServiceHost.Config {
  /// The keys every service host reads.
  public static let keys: [ConfigKey] = [
    ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG)."),
    ConfigKey("host", "Address to listen on (default 127.0.0.1)."),
    ConfigKey("framed-port", "Framed-wire port (0 picks a free one)."),
    ConfigKey("grpc-port", "gRPC over HTTP/2 port (0 picks a free one)."),
    ConfigKey("admin-port", "Admin HTTP port for /metrics /livez /readyz (0 picks a free one)."),
    ConfigKey("max-concurrent-streams", "Streams one client may have open on a framed connection (default 1024)."),
    ConfigKey(
      "max-connections",
      "Connections each RPC listener holds at once; more are closed at once (default: the descriptor limit less 256, shared by the listeners, at most 10000)."
    ),
    ConfigKey("grpc-max-idle", "Seconds a gRPC/HTTP2 connection may go without calls before it is closed, 0 for never (default 300)."),
    ConfigKey("grpc-max-age", "Seconds after which a gRPC/HTTP2 connection is asked to go away (GOAWAY), 0 for never (default 3600)."),
    ConfigKey(
      "grace", "Seconds each call still running at shutdown gets, counted from its connection's final GOAWAY (sent at most 5 s after SIGTERM); default 10."),
    ConfigKey("rate-limit", "Calls per second allowed per principal, 0 for no limit (default 500)."),
    ConfigKey(
      "trusted-proxies",
      "Addresses (IPv4, IPv4/prefix, IPv6) of proxies such as the gateway whose x-forwarded-for keys an anonymous caller's rate limit (default none)."),
    ConfigKey("log-level", "trace, debug, info, notice, warning, error, critical (default info)."),
    ConfigKey("interceptors", "The standard interceptors; --no-interceptors measures what they cost.", kind: .toggle),
  ]

  /// The layered host configuration over `defaults`, validated; errors name the key and
  /// where it came from.
  public init(layers: ConfigLayers, defaults: ServiceHost.Config) throws {
    var c = defaults
    c.host = layers.string("host", default: c.host)
    // The listeners bind an IPv4 literal; a name would only fail later, at bind time.
    let octets = c.host.split(separator: ".", omittingEmptySubsequences: false)
    guard octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) else {
      throw ConfigError(key: "host", origin: layers.raw("host")?.1, reason: "\"\(c.host)\" is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)")
    }
    c.framedPort = try layers.int("framed-port", default: c.framedPort, in: 0...65535)
    c.grpcPort = try layers.int("grpc-port", default: c.grpcPort, in: 0...65535)
    c.adminPort = try layers.int("admin-port", default: c.adminPort ?? 0, in: 0...65535)
    c.framed.connection.settings.maxConcurrentStreams = try layers.int(
      "max-concurrent-streams", default: c.framed.connection.settings.maxConcurrentStreams, in: 1...1_000_000)
    if layers.raw("max-connections") != nil {
      c.maxConnections = try layers.int("max-connections", default: 0, in: 1...1_000_000)
    }
    c.grpc.maxIdle = try Self.optionalSeconds(layers, "grpc-max-idle", default: c.grpc.maxIdle)
    c.grpc.maxAge = try Self.optionalSeconds(layers, "grpc-max-age", default: c.grpc.maxAge)
    let grace = try layers.double("grace", default: Double(c.grace.components.seconds), in: 0...3600)
    c.grace = .milliseconds(Int64(grace * 1000))
    let rate = try layers.double("rate-limit", default: c.rateLimit?.perSecond ?? 0, in: 0...10_000_000)
    c.rateLimit = rate > 0 ? RateLimit(perSecond: rate, burst: max(1, rate * 2)) : nil
    if let (text, origin) = layers.raw("trusted-proxies") {
      do { c.trustedProxies = try TrustedProxies(text) } catch { throw ConfigError(key: "trusted-proxies", origin: origin, reason: error.reason) }
    }
    c.interceptors = try layers.bool("interceptors", default: c.interceptors)
    self = c
  }

  /// Seconds as a duration; 0 means none.
  private static func optionalSeconds(_ layers: ConfigLayers, _ key: String, default value: Duration?) throws -> Duration? {
    let fallback = value.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 } ?? 0
    let seconds = try layers.double(key, default: fallback, in: 0...(30 * 24 * 3600))
    return seconds > 0 ? .milliseconds(Int64(seconds * 1000)) : nil
  }
}

extension Logger.Level {
  /// `log-level` from configuration (default info).
  public init(layers: ConfigLayers) throws {
    let text = layers.string("log-level", default: "info")
    guard let level = Logger.Level(rawValue: text.lowercased()) else {
      throw ConfigError(key: "log-level", origin: layers.raw("log-level")?.1, reason: "\"\(text)\" is not a log level")
    }
    self = level
  }
}

/// Where a service keeps its data: a SQLite file in `data-dir` (zero setup), or PostgreSQL
/// when `QUIZWIRE_DATABASE_URL` is set.
public struct StorageOptions: Sendable {
  public static let keys: [ConfigKey] = [
    ConfigKey("data-dir", "Folder for SQLite files and local secrets (default ./.quizwire)."),
    ConfigKey("pool-size", "PostgreSQL connections per process when QUIZWIRE_DATABASE_URL is set (default 10)."),
    ConfigKey("database-url", "postgres://… to use PostgreSQL instead of SQLite.", kind: .secret),
  ]

  public var dataDir: String
  /// `postgres://…` (a secret: it may hold a password).
  public var databaseURL: Secret?
  public var poolSize = 10

  public init(dataDir: String, databaseURL: Secret? = nil, poolSize: Int = 10) {
    self.dataDir = dataDir
    self.databaseURL = databaseURL
    self.poolSize = poolSize
  }

  public init(layers: ConfigLayers) throws {
    self.dataDir = layers.string("data-dir", default: "./.quizwire")
    self.poolSize = try layers.int("pool-size", default: 10, in: 1...1000)
    self.databaseURL = try layers.secret("database-url")
    if let url = self.databaseURL?.reveal(), !(url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")) {
      throw ConfigError(key: "database-url", origin: .environment, reason: "must start with postgres:// (value not shown)")
    }
  }

  /// `<data-dir>/<service>.sqlite`, or the PostgreSQL URL.
  public func location(service: String) -> DatabaseLocation {
    if let url = self.databaseURL { return .postgres(url: url.reveal(), poolSize: self.poolSize) }
    return .sqlite(path: URL(fileURLWithPath: self.dataDir).appendingPathComponent("\(service).sqlite").path)
  }
}

/// A secret kept in a 0600 file in the data folder, made on first use (zero setup on one
/// machine: the auth service's key-encryption key, the internal clients' secrets).
public enum LocalSecretFile {
  /// Reads `path`, or writes a new random secret there first. An existing file is never
  /// replaced: what it protects would be lost with it.
  public static func readOrCreate(path: String, key: String) throws -> Secret {
    if FileManager.default.fileExists(atPath: path) {
      guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
        !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
      else {
        throw ConfigError(key: key, origin: nil, reason: "\(path) exists but is unreadable or empty; restore it or remove it")
      }
      return Secret(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    var bytes = [UInt8](repeating: 0, count: 32)
    var rng = SystemRandomNumberGenerator()
    for i in bytes.indices { bytes[i] = rng.next() }
    let secret = Data(bytes).base64EncodedString().replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-")
      .replacingOccurrences(of: "=", with: "")
    guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
      throw ConfigError(key: key, origin: nil, reason: "cannot write \(path)")
    }
    return Secret(secret)
  }

  /// `<data-dir>/<service>-client.secret`: an internal client's secret under `quizwire up`.
  public static func clientSecretPath(dataDir: String, service: String) -> String {
    URL(fileURLWithPath: dataDir).appendingPathComponent("\(service)-client.secret").path
  }
}
