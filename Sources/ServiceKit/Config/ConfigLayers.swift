import Foundation

/// Where a configuration value came from; named in errors so the user knows what to fix.
public enum ConfigOrigin: Sendable, Hashable, CustomStringConvertible {
  case flag, environment, file(String), defaultValue

  public var description: String {
    switch self {
    case .flag: "command-line flag"
    case .environment: "environment"
    case .file(let path): "config file \(path)"
    case .defaultValue: "default"
    }
  }
}

/// A configuration value that is wrong, naming the key and where it came from.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
  public var key: String
  public var origin: ConfigOrigin?
  public var reason: String
  public init(key: String, origin: ConfigOrigin?, reason: String) {
    self.key = key
    self.origin = origin
    self.reason = reason
  }
  public var description: String {
    "config \(key)\(origin.map { " (from \($0))" } ?? ""): \(reason)"
  }
}

/// Configuration layered as flags > `QUIZWIRE_*` environment > config file > defaults.
///
/// Keys are kebab-case (`framed-port`); the environment spells them `QUIZWIRE_FRAMED_PORT`,
/// the config file (a flat JSON object) `framed-port` or `framed_port`. Secrets never come
/// from flags or the config file, which end up in shell history, process lists and git.
public struct ConfigLayers: Sendable {
  public let environment: [String: String]
  public let filePath: String?
  /// Command-line values by key (`--framed-port 7410` → `framed-port: "7410"`), for commands
  /// whose keys are declared at run time (`quizwire serve <service>`).
  public let flags: [String: String]
  private let file: [String: String]

  /// - Parameters:
  ///   - environment: the process environment (tests pass their own).
  ///   - filePath: an optional JSON config file; `QUIZWIRE_CONFIG` names one when nil.
  ///   - flags: command-line values by kebab-case key.
  public init(
    environment: [String: String] = ProcessInfo.processInfo.environment, filePath: String? = nil,
    flags: [String: String] = [:]
  ) throws {
    self.environment = environment
    self.flags = flags
    let path = filePath ?? environment["QUIZWIRE_CONFIG"]
    self.filePath = path
    guard let path else {
      self.file = [:]
      return
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ConfigError(key: "config", origin: filePath != nil ? .flag : .environment, reason: "cannot read \(path)")
    }
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: data)
    } catch {
      throw ConfigError(key: "config", origin: .file(path), reason: "not valid JSON")
    }
    guard let dict = object as? [String: Any] else {
      throw ConfigError(key: "config", origin: .file(path), reason: "must be a JSON object of key: value")
    }
    var flat: [String: String] = [:]
    for (key, value) in dict {
      let name = key.replacingOccurrences(of: "_", with: "-").lowercased()
      guard flat[name] == nil else {
        throw ConfigError(key: name, origin: .file(path), reason: "set twice (as \"\(key)\" and another spelling)")
      }
      switch value {
      case let s as String: flat[name] = s
      case let n as NSNumber: flat[name] = n.stringValue
      default: throw ConfigError(key: name, origin: .file(path), reason: "must be a string, number or boolean")
      }
    }
    self.file = flat
  }

  public static func environmentName(_ key: String) -> String {
    "QUIZWIRE_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
  }

  /// The raw value and its origin, highest layer first; nil when no layer sets it.
  public func raw(_ key: String, flag: String? = nil) -> (String, ConfigOrigin)? {
    if let flag = flag ?? self.flags[key] { return (flag, .flag) }
    if let env = self.environment[Self.environmentName(key)] { return (env, .environment) }
    if let value = self.file[key], let path = self.filePath { return (value, .file(path)) }
    return nil
  }

  public func string(_ key: String, flag: String? = nil, default value: String) -> String {
    self.raw(key, flag: flag)?.0 ?? value
  }

  public func int(_ key: String, flag: Int? = nil, default value: Int, in range: ClosedRange<Int>) throws -> Int {
    guard let (text, origin) = self.raw(key, flag: flag.map(String.init)) else { return value }
    guard let n = Int(text.trimmingCharacters(in: .whitespaces)) else {
      throw ConfigError(key: key, origin: origin, reason: "\"\(text)\" is not an integer")
    }
    guard range.contains(n) else {
      throw ConfigError(key: key, origin: origin, reason: "\(n) is outside \(range.lowerBound)...\(range.upperBound)")
    }
    return n
  }

  public func double(_ key: String, flag: Double? = nil, default value: Double, in range: ClosedRange<Double>) throws -> Double {
    guard let (text, origin) = self.raw(key, flag: flag.map { String($0) }) else { return value }
    guard let n = Double(text.trimmingCharacters(in: .whitespaces)), n.isFinite else {
      throw ConfigError(key: key, origin: origin, reason: "\"\(text)\" is not a number")
    }
    guard range.contains(n) else {
      throw ConfigError(key: key, origin: origin, reason: "\(n) is outside \(range.lowerBound)...\(range.upperBound)")
    }
    return n
  }

  public func bool(_ key: String, flag: Bool? = nil, default value: Bool) throws -> Bool {
    guard let (text, origin) = self.raw(key, flag: flag.map { $0 ? "true" : "false" }) else { return value }
    switch text.lowercased() {
    case "1", "true", "yes", "on": return true
    case "0", "false", "no", "off": return false
    default: throw ConfigError(key: key, origin: origin, reason: "\"\(text)\" is not a boolean")
    }
  }

  /// A secret from `QUIZWIRE_<KEY>` or from the file `QUIZWIRE_<KEY>_FILE` names (the
  /// Kubernetes-secret style). Refused in the config file; the value is never echoed.
  public func secret(_ key: String) throws -> Secret? {
    if self.flags[key] != nil {
      throw ConfigError(key: key, origin: .flag, reason: "secrets are read only from the environment or a file named by \(Self.environmentName(key))_FILE")
    }
    if self.file[key] != nil, let path = self.filePath {
      throw ConfigError(
        key: key, origin: .file(path), reason: "secrets are read only from the environment or a file named by \(Self.environmentName(key))_FILE")
    }
    let name = Self.environmentName(key)
    if let value = self.environment[name] {
      guard !value.isEmpty else { throw ConfigError(key: key, origin: .environment, reason: "is empty") }
      return Secret(value)
    }
    if let path = self.environment[name + "_FILE"] {
      guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
        throw ConfigError(key: key, origin: .environment, reason: "cannot read the file \(name)_FILE names")
      }
      let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !value.isEmpty else { throw ConfigError(key: key, origin: .environment, reason: "the file \(name)_FILE names is empty") }
      return Secret(value)
    }
    return nil
  }
}

/// A secret value. Printing, interpolating or dumping it shows `<redacted>`; only
/// `reveal()` gives the value, so a leak is a visible call in review.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  private let value: String
  public init(_ value: String) { self.value = value }
  public func reveal() -> String { self.value }
  public var description: String { "<redacted>" }
  public var debugDescription: String { "<redacted>" }
  public var customMirror: Mirror { Mirror(self, children: []) }
}
