import Foundation
import Logging
import NIOConcurrencyHelpers

/// Where JSON log lines go: standard output in production, a buffer in tests.
public final class LogSink: Sendable {
  private let write: @Sendable (String) -> Void

  public init(write: @escaping @Sendable (String) -> Void) { self.write = write }

  /// Standard output, one line per write (a line is one `write(2)`, so lines don't interleave).
  public static let standardOutput = LogSink { line in
    FileHandle.standardOutput.write(Data(line.utf8))
  }

  func emit(_ line: String) { self.write(line) }
}

/// A swift-log handler that writes one JSON object per line:
/// `{"time":…,"level":…,"service":…,"message":…, …metadata}`.
///
/// Metadata keys that name credentials are replaced by `"<redacted>"` whatever their value —
/// a second line of defence; call sites must not log credentials in the first place.
public struct JSONLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  public var logLevel: Logger.Level
  public var metadataProvider: Logger.MetadataProvider?
  private let label: String
  private let sink: LogSink

  public init(
    label: String, level: Logger.Level = .info, sink: LogSink = .standardOutput,
    metadataProvider: Logger.MetadataProvider? = nil
  ) {
    self.label = label
    self.logLevel = level
    self.sink = sink
    self.metadataProvider = metadataProvider
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  static let redactedKeys: Set<String> = [
    "password", "token", "access_token", "refresh_token", "authorization", "api_key", "x-api-key",
    "secret", "client_secret", "private_key", "cookie", "set-cookie",
  ]

  public func log(event: LogEvent) {
    var fields: [(String, Logger.Metadata.Value)] = []
    var merged = self.metadata
    if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let extra = event.metadata { merged.merge(extra) { _, new in new } }
    for key in merged.keys.sorted() {
      let value = Self.redactedKeys.contains(key.lowercased()) ? .string("<redacted>") : merged[key]!
      fields.append((key, value))
    }
    var line = "{"
    line += "\"time\":\(Self.quote(Self.timestamp()))"
    line += ",\"level\":\(Self.quote(event.level.rawValue))"
    line += ",\"service\":\(Self.quote(self.label))"
    line += ",\"message\":\(Self.quote(event.message.description))"
    for (key, value) in fields where !["time", "level", "service", "message"].contains(key) {
      line += ",\(Self.quote(key)):\(Self.json(value))"
    }
    line += "}\n"
    self.sink.emit(line)
  }

  private static func timestamp() -> String {
    Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
  }

  static func json(_ value: Logger.Metadata.Value) -> String {
    switch value {
    case .string(let s): return quote(s)
    case .stringConvertible(let c):
      // Numbers and booleans stay JSON numbers and booleans.
      if let b = c as? Bool { return b ? "true" : "false" }
      if c is any BinaryInteger { return c.description }
      if let d = c as? Double, d.isFinite { return c.description }
      return quote(c.description)
    case .array(let a): return "[" + a.map(json).joined(separator: ",") + "]"
    case .dictionary(let d):
      return "{" + d.keys.sorted().map { "\(quote($0)):\(json(d[$0]!))" }.joined(separator: ",") + "}"
    }
  }

  static func quote(_ s: String) -> String { JSONText.quoted(s) }
}

/// Collects log lines in memory; tests read them back.
public final class CapturedLog: Sendable {
  private let lines = NIOLockedValueBox<[String]>([])
  public init() {}
  public var sink: LogSink { LogSink { line in self.lines.withLockedValue { $0.append(line) } } }
  /// Each line parsed as a JSON object.
  public func entries() -> [[String: Any]] {
    self.lines.withLockedValue { $0 }.compactMap {
      (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }
  }
  public func rawLines() -> [String] { self.lines.withLockedValue { $0 } }
}
