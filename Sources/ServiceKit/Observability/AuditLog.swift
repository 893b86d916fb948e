import GRPCCore
import Logging
import ServiceContextModule

/// Security-relevant actions (role changes, key rotations, credentials issued or revoked,
/// clients registered, deletes by admins) as structured events on their own logger, labelled
/// "audit", apart from the access log: one JSON line per action with who, what, on what, the
/// request id and the outcome.
///
/// Never pass a secret (key, token, password, client secret) as target or detail: ids and
/// names only. The JSON handler's redaction of credential-named keys is a second line of
/// defence, not the first.
public struct AuditLog: Sendable {
  public enum Outcome: String, Sendable, Hashable {
    case success, denied, failed

    /// How `error` ended the action: refused (no permission, no valid credential) or failed.
    public init(_ error: any Error) {
      let code = (error as? any RPCErrorConvertible)?.rpcErrorCode
      self = code == .permissionDenied || code == .unauthenticated ? .denied : .failed
    }
  }

  public static let label = "audit"
  private let logger: Logger

  /// JSON lines to `sink`. The level is fixed: an operator quieting the service log must not
  /// silence the audit trail.
  public init(sink: LogSink = .standardOutput) {
    self.logger = Logger(label: Self.label) { JSONLogHandler(label: $0, level: .info, sink: sink) }
  }

  /// Writes events through `logger` (its label should be "audit").
  public init(logger: Logger) { self.logger = logger }

  /// Drops every event (tools and tests that don't want them).
  public static var disabled: AuditLog { AuditLog(logger: Logger(label: label) { _ in SwiftLogNoOpLogHandler() }) }

  /// Writes one event. The actor is the current call's principal (`by` overrides it, e.g.
  /// "system" for start-up work outside any call); the request id is the current call's.
  public func record(
    _ action: String, target: String, outcome: Outcome = .success, details: [String: String] = [:],
    by who: String? = nil
  ) {
    let call = ServiceContext.current?.call
    var metadata: Logger.Metadata = [
      "event": "audit",
      "action": .string(action),
      "target": .string(target),
      "outcome": .string(outcome.rawValue),
      "actor": .string(who ?? call?.principal?.description ?? "anonymous"),
      "request_id": .string(call?.requestID ?? "-"),
    ]
    // Details never replace the fixed fields.
    for (key, value) in details where metadata[key] == nil { metadata[key] = .string(value) }
    self.logger.notice("\(action)", metadata: metadata)
  }

  /// Runs `body` and records its outcome: success when it returns, denied or failed (see
  /// `Outcome.init(_:)`) when it throws, and rethrows.
  public func recording<T>(
    _ action: String, target: String, details: [String: String] = [:],
    _ body: () async throws -> T
  ) async throws -> T {
    let result: T
    do {
      result = try await body()
    } catch {
      self.record(action, target: target, outcome: Outcome(error), details: details)
      throw error
    }
    self.record(action, target: target, details: details)
    return result
  }
}
