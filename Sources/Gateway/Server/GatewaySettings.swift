import Logging
import ServiceKit

/// What the gateway reads from configuration (flags > environment > file > defaults), like
/// a service module's settings: `quizwire serve gateway --help` lists them.
public struct GatewaySettings: Sendable {
  public static let keys: [ConfigKey] = [
    ConfigKey("config", "JSON config file (also QUIZWIRE_CONFIG)."),
    ConfigKey("host", "Address to listen on (default 127.0.0.1)."),
    ConfigKey("http-port", "The API's HTTP port (default 8080; 0 picks a free one)."),
    ConfigKey("admin-port", "Admin HTTP port for /metrics /livez /readyz (default 8082; 0 picks a free one)."),
    ConfigKey("auth-target", "auth's framed address(es), host:port[,host:port] (required)."),
    ConfigKey("quiz-target", "quiz's framed address(es), host:port[,host:port] (required)."),
    ConfigKey("scoring-target", "scoring's framed address(es), host:port[,host:port] (required)."),
    ConfigKey("body-limit", "Largest request body in bytes; larger is 413 (default 1048576)."),
    ConfigKey("cors-origins", "Origins browsers may call the API from, scheme://host[:port][,…] (default none: no cross-origin access)."),
    ConfigKey("log-level", "trace, debug, info, notice, warning, error, critical (default info)."),
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
    if let (text, origin) = layers.raw("cors-origins") {
      do { self.corsOrigins = try CORSPolicy.parse(text) } catch { throw ConfigError(key: "cors-origins", origin: origin, reason: error.message) }
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
