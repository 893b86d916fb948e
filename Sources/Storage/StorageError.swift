import GRPCCore
import GRPCProtobuf
import Logging
import Synchronization

/// Storage failures callers act on; everything else is an internal error.
public enum StorageError: Error, Sendable, Hashable, CustomStringConvertible {
  /// A unique constraint refused the write (duplicate email, token hash…).
  case uniqueViolation
  case cannotOpen(String)
  /// The database can't be reached right now (connection refused or lost, pool closed).
  case unavailable(String)
  /// The database is reachable but contended: no connection or lock within the wait limit,
  /// or too many callers already waiting. Retrying after `retryAfter` is expected to work.
  case busy(String, retryAfter: Duration)

  public var description: String {
    switch self {
    case .uniqueViolation: "unique constraint violated"
    case .cannotOpen(let why): "cannot open database: \(why)"
    case .unavailable(let why): "database unavailable: \(why)"
    case .busy(let why, let retryAfter): "database busy: \(why) (retry after \(retryAfter.retryMilliseconds) ms)"
    }
  }
}

/// Handlers just throw storage errors; callers get a status, never driver details.
extension StorageError: RPCErrorConvertible {
  /// Trailing metadata with the retry delay in milliseconds, as the rate limiter sends it.
  public static let retryAfterKey = "retry-after-ms"

  public var rpcErrorCode: RPCError.Code {
    switch self {
    case .uniqueViolation: .alreadyExists
    // Retryable from the caller's side: another replica may be fine. Breakers count it.
    case .cannotOpen, .unavailable: .unavailable
    // Contention is load, not an outage: it must not open a caller's circuit breaker.
    case .busy: .resourceExhausted
    }
  }

  public var rpcErrorMessage: String {
    switch self {
    case .uniqueViolation: "already exists"
    case .cannotOpen, .unavailable: "database unavailable"
    case .busy(_, let retryAfter): "database busy; retry after \(retryAfter.retryMilliseconds) ms"
    }
  }

  /// For `busy`: a `google.rpc.RetryInfo` detail and `retry-after-ms`.
  public var rpcErrorMetadata: Metadata {
    guard case .busy(_, let retryAfter) = self else { return [:] }
    return Self.retryMetadata(code: .resourceExhausted, message: self.rpcErrorMessage, retryAfter: retryAfter)
  }

  /// A status with a `google.rpc.RetryInfo` detail, plus `retry-after-ms` for callers that
  /// don't decode details: what every "busy, come back later" refusal carries.
  public static func retryMetadata(code: RPCError.Code, message: String, retryAfter: Duration) -> Metadata {
    var metadata = GoogleRPCStatus(code: code, message: message, details: [.retryInfo(delay: retryAfter)]).rpcErrorMetadata
    metadata.addString(String(retryAfter.retryMilliseconds), forKey: Self.retryAfterKey)
    return metadata
  }
}

extension Duration {
  /// Whole milliseconds, rounded up and at least 1 (a zero delay invites an immediate retry).
  public var retryMilliseconds: Int64 {
    max(1, self.components.seconds * 1000 + (self.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
  }
}

/// Warnings about contention, at most one per `interval` per cause: under a burst every
/// refused call would otherwise log, and the log would become the next bottleneck. The line
/// that does go out says how many were suppressed before it.
public final class ContentionLog: Sendable {
  private let logger: Logger
  private let interval: Duration
  private let state = Mutex<[String: (last: ContinuousClock.Instant, suppressed: Int)]>([:])

  public init(logger: Logger, interval: Duration = .seconds(1)) {
    self.logger = logger
    self.interval = interval
  }

  public func warn(_ message: Logger.Message, cause: String, metadata: Logger.Metadata) {
    let now = ContinuousClock.now
    let suppressed: Int? = self.state.withLock { entries in
      if let entry = entries[cause], now - entry.last < self.interval {
        entries[cause] = (entry.last, entry.suppressed + 1)
        return nil
      }
      let suppressed = entries[cause]?.suppressed ?? 0
      entries[cause] = (now, 0)
      return suppressed
    }
    guard let suppressed else { return }
    var metadata = metadata
    metadata["cause"] = .string(cause)
    if suppressed > 0 { metadata["suppressed"] = .stringConvertible(suppressed) }
    self.logger.warning(message, metadata: metadata)
  }
}
