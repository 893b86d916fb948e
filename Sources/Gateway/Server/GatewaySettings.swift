import Logging
import ServiceKit
import Storage

/// What the gateway reads from configuration (flags > environment > file > defaults), like
/// a service module's settings: `quizwire serve gateway --help` lists them.
public struct GatewaySettings: Sendable {
  public static let keys: [ConfigKey] = ownKeys + StorageOptions.keys
  /// The gateway's own keys; `data-dir`, `database-url` and `pool-size` are every service's.
  static let ownKeys: [ConfigKey] = [
    ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG)."),
    ConfigKey("host", "Address to listen on (default 127.0.0.1)."),
    ConfigKey("http-port", "The API's HTTP port (default 8080; 0 picks a free one)."),
    ConfigKey("admin-port", "Admin HTTP port for /metrics /livez /readyz (default 8082; 0 picks a free one)."),
    ConfigKey("auth-target", "auth's framed address(es), host:port[,host:port] (required)."),
    ConfigKey("quiz-target", "quiz's framed address(es), host:port[,host:port] (required)."),
    ConfigKey("scoring-target", "scoring's framed address(es), host:port[,host:port] (required)."),
    ConfigKey("body-limit", "Largest request body in bytes; larger is 413 (default 1048576)."),
    ConfigKey("cors-origins", "Origins browsers may call the API from, scheme://host[:port][,…] (default none: no cross-origin access)."),
    ConfigKey("rate-limit", "Requests per second per API key, user or client address; 0 for no limit (default 100)."),
    ConfigKey("rate-limit-burst", "Requests at once before the rate applies (default 2 × rate-limit)."),
    ConfigKey("rate-limit-buckets", "Most callers tracked at once; idle ones are dropped first (default 100000)."),
    ConfigKey("auth-issuer", "Expected bearer token issuer (default quizwire-auth)."),
    ConfigKey("auth-audience", "Expected bearer token audience (default quizwire)."),
    ConfigKey("sse-heartbeat-ms", "Milliseconds between heartbeats on an idle event stream (default 15000)."),
    ConfigKey(
      "ticket-secret",
      "Key sealing play tickets, the same on every replica: at least 32 random characters (default: a random key per process, so a ticket works only on the replica that issued it).",
      kind: .secret),
    ConfigKey("play-ticket-ttl-ms", "How long a play ticket stays valid, in milliseconds (default 30000)."),
    ConfigKey("read-deadline-ms", "Deadline of a GET route's call to its service, in milliseconds; past it the answer is 504 (default 3000)."),
    ConfigKey("write-deadline-ms", "Deadline of every other route's call, in milliseconds (default 5000)."),
    ConfigKey("password-deadline-ms", "Deadline of register and login, which hash a password, in milliseconds (default 10000)."),
    ConfigKey("tls-cert", "PEM certificate chain: with tls-key the API port serves HTTPS only, and every answer carries Strict-Transport-Security."),
    ConfigKey("tls-key", "PEM private key file of tls-cert."),
    ConfigKey("hsts-max-age", "Seconds browsers keep to HTTPS after an answer over TLS (Strict-Transport-Security; default 31536000, one year)."),
    ConfigKey(
      "request-head-timeout-ms", "A new connection must send a complete request head within this many milliseconds, else it is closed (default 10000)."),
    ConfigKey(
      "idle-timeout-ms",
      "A keep-alive connection idle between requests, or a request that stops arriving, is closed after this many milliseconds (default 60000)."),
    ConfigKey("log-level", "trace, debug, info, notice, warning, error, critical (default info)."),
    ConfigKey("upstream-transport", "framed (default) or h2: the wire the unary routes call the services over; h2 needs the --<service>-grpc-target keys."),
    ConfigKey("auth-grpc-target", "auth's gRPC/HTTP2 address(es), for upstream-transport h2."),
    ConfigKey("quiz-grpc-target", "quiz's gRPC/HTTP2 address(es), for upstream-transport h2."),
    ConfigKey("scoring-grpc-target", "scoring's gRPC/HTTP2 address(es), for upstream-transport h2."),
  ]

  /// Ports under `quizwire up`.
  public static let defaultHTTPPort = 8080
  public static let defaultAdminPort = 8082
  /// The services the routes call, by the short name their `--<name>-target` uses.
  public static let upstreamNames = ["auth", "quiz", "scoring"]

  public var host = "127.0.0.1"
  public var httpPort = GatewaySettings.defaultHTTPPort
  public var adminPort = GatewaySettings.defaultAdminPort
  /// Replicas by short service name.
  public var targets: [String: [String]] = [:]
  public var bodyLimit = 1 << 20
  /// The CORS allow-list (`CORSPolicy`); empty: no cross-origin access.
  public var corsOrigins: [String] = []
  public var logLevel = Logger.Level.info
  /// The comment line an idle SSE/NDJSON stream gets this often (proxies close silent ones).
  public var heartbeat = Duration.seconds(15)
  /// Per API key, user or client address (`RateLimitPolicy`); nil: no limit. Generous by
  /// default: it is there to stop floods, not to meter ordinary clients.
  public var rateLimit: RateLimit? = RateLimit(perSecond: 100, burst: 200)
  public var rateLimitBuckets = 100_000
  /// What bearer tokens must say to be verified by the gateway (as `RemoteAuthConfig`).
  public var authIssuer = "quizwire-auth"
  public var authAudience = "quizwire"
  /// The wire of the unary routes' calls, and with `.h2` the services' gRPC addresses.
  public var upstreamTransport = UpstreamTransport.framed
  public var grpcTargets: [String: [String]] = [:]
  /// Seals play tickets (`PlayTickets`); nil: a random key of this process only.
  public var ticketSecret: Secret?
  public var playTicketTTL = Duration.seconds(30)
  /// The gateway's own database (idempotency records, single-use keys): `<data-dir>/gateway.sqlite`,
  /// or the PostgreSQL every replica shares when `database-url` is set.
  public var storage = StorageOptions(dataDir: "./.quizwire")
  /// Each route's upstream deadline.
  public var deadlines = RouteDeadlines()
  /// How long a new connection may take to send its first request head.
  public var requestHeadTimeout = Duration.seconds(10)
  /// How long a keep-alive connection may sit idle, or a request stall while arriving.
  public var idleTimeout = Duration.seconds(60)
  /// PEM files of the API port's certificate chain and key; nil: plain HTTP.
  public var tls: (certificate: String, key: String)?
  /// `Strict-Transport-Security`'s max-age when `tls` is set.
  public var hstsMaxAge = 31_536_000
  /// How often expired idempotency records and single-use keys are deleted.
  public var storeSweepInterval = Duration.seconds(600)

  /// Where `storage` puts the gateway's database.
  public var databaseLocation: DatabaseLocation { self.storage.location(service: GatewayStore.serviceName) }

  public init(host: String = "127.0.0.1", httpPort: Int, adminPort: Int, targets: [String: [String]]) {
    self.host = host
    self.httpPort = httpPort
    self.adminPort = adminPort
    self.targets = targets
  }

  /// Reads and checks every key; a bad or missing one fails naming it.
  public init(layers: ConfigLayers) throws {
    self.host = layers.string("host", default: self.host)
    self.httpPort = try layers.int("http-port", default: self.httpPort, in: 0...65535)
    self.adminPort = try layers.int("admin-port", default: self.adminPort, in: 0...65535)
    self.bodyLimit = try layers.int("body-limit", default: self.bodyLimit, in: 1...(64 << 20))
    self.logLevel = try Logger.Level(layers: layers)
    self.heartbeat = .milliseconds(try layers.int("sse-heartbeat-ms", default: 15_000, in: 10...3_600_000))
    if let (text, origin) = layers.raw("cors-origins") {
      do { self.corsOrigins = try CORSPolicy.parse(text) } catch { throw ConfigError(key: "cors-origins", origin: origin, reason: error.message) }
    }
    let rate = try layers.double("rate-limit", default: self.rateLimit?.perSecond ?? 0, in: 0...10_000_000)
    let burst = try layers.double("rate-limit-burst", default: max(1, rate * 2), in: 1...20_000_000)
    self.rateLimit = rate > 0 ? RateLimit(perSecond: rate, burst: burst) : nil
    self.rateLimitBuckets = try layers.int("rate-limit-buckets", default: self.rateLimitBuckets, in: 1...10_000_000)
    self.authIssuer = layers.string("auth-issuer", default: self.authIssuer)
    self.authAudience = layers.string("auth-audience", default: self.authAudience)
    self.ticketSecret = try layers.secret("ticket-secret")
    if let secret = self.ticketSecret, secret.reveal().utf8.count < 32 {
      throw ConfigError(key: "ticket-secret", origin: .environment, reason: "must be at least 32 characters (e.g. openssl rand -base64 32)")
    }
    self.playTicketTTL = .milliseconds(try layers.int("play-ticket-ttl-ms", default: 30_000, in: 100...300_000))
    self.storage = try StorageOptions(layers: layers)
    self.deadlines = RouteDeadlines(
      read: .milliseconds(try layers.int("read-deadline-ms", default: 3_000, in: 1...600_000)),
      write: .milliseconds(try layers.int("write-deadline-ms", default: 5_000, in: 1...600_000)),
      passwordHashing: .milliseconds(try layers.int("password-deadline-ms", default: 10_000, in: 1...600_000)))
    switch (layers.raw("tls-cert"), layers.raw("tls-key")) {
    case (nil, nil): self.tls = nil
    case (let cert?, let key?): self.tls = (cert.0, key.0)
    case (nil, let key?): throw ConfigError(key: "tls-cert", origin: key.1, reason: "tls-key is set, so tls-cert is required")
    case (let cert?, nil): throw ConfigError(key: "tls-key", origin: cert.1, reason: "tls-cert is set, so tls-key is required")
    }
    self.requestHeadTimeout = .milliseconds(try layers.int("request-head-timeout-ms", default: 10_000, in: 10...600_000))
    self.idleTimeout = .milliseconds(try layers.int("idle-timeout-ms", default: 60_000, in: 10...3_600_000))
    self.hstsMaxAge = try layers.int("hsts-max-age", default: self.hstsMaxAge, in: 0...315_360_000)
    if let (text, origin) = layers.raw("upstream-transport") {
      guard let transport = UpstreamTransport(rawValue: text) else {
        throw ConfigError(key: "upstream-transport", origin: origin, reason: "\"\(text)\" is not framed or h2")
      }
      self.upstreamTransport = transport
    }
    for name in Self.upstreamNames {
      if let (text, _) = layers.raw("\(name)-grpc-target") { self.grpcTargets[name] = try ServiceTargets.parse(text, key: "\(name)-grpc-target") }
    }
    for name in Self.upstreamNames {
      let key = "\(name)-target"
      guard let (text, _) = layers.raw(key) else {
        throw ConfigError(key: key, origin: nil, reason: "required: the gateway calls \(name) (give --\(key) host:port[,host:port])")
      }
      self.targets[name] = try ServiceTargets.parse(text, key: key)
    }
  }
}
