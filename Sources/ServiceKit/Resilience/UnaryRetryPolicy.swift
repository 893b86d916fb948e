import GRPCCore

/// When a failed unary call of an idempotent method is tried again, and after how long (pure;
/// the jitter is passed in). The rules are gRPC's retry design (A6), as GRPCCore's own retry
/// executor applies them: only the listed codes are retried, at most `maxAttempts` attempts in
/// all, an exponential backoff with full jitter, and the server's pushback
/// (`grpc-retry-pushback-ms`) wins: a negative or unreadable one means "don't retry", a
/// positive one replaces the backoff. A retry that could not start before the call's deadline
/// isn't made.
public struct UnaryRetryPolicy: Sendable, Hashable {
  /// Attempts in all, the first one included (1: never retry).
  public var maxAttempts: Int
  public var initialBackoff: Duration
  public var maxBackoff: Duration
  public var backoffMultiplier: Double
  public var retryableCodes: Set<RPCError.Code>

  public init(
    maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(50), maxBackoff: Duration = .seconds(1), backoffMultiplier: Double = 2,
    retryableCodes: Set<RPCError.Code> = [.unavailable, .resourceExhausted]
  ) {
    self.maxAttempts = maxAttempts
    self.initialBackoff = initialBackoff
    self.maxBackoff = maxBackoff
    self.backoffMultiplier = backoffMultiplier
    self.retryableCodes = retryableCodes
  }

  /// The pause before attempt `attempt + 1`, or nil when `error` (attempt `attempt`'s, counting
  /// from 1) ends the call.
  /// - Parameters:
  ///   - remaining: time left before the call's deadline (nil: no deadline).
  ///   - jitter: a random number in 0..<1; the backoff is that fraction of its ceiling.
  public func delay(afterAttempt attempt: Int, failedWith error: RPCError, remaining: Duration?, jitter: Double) -> Duration? {
    guard attempt < self.maxAttempts, self.retryableCodes.contains(error.code) else { return nil }
    let pause: Duration
    if let pushback = error.metadata.first(where: { $0.key == "grpc-retry-pushback-ms" })?.value {
      guard case .string(let text) = pushback, let ms = Int64(text), ms >= 0 else { return nil }
      pause = .milliseconds(ms)
    } else {
      var ceiling = self.initialBackoff
      for _ in 1..<attempt { ceiling = min(self.maxBackoff, ceiling * self.backoffMultiplier) }
      pause = min(self.maxBackoff, ceiling) * min(max(jitter, 0), 1)
    }
    if let remaining, pause >= remaining { return nil }
    return pause
  }
}
