import Logging
import ServiceKit
import Storage

/// The auth service's background jobs (docs/services.md, "Jobs").
///
/// `auth.purge_expired_tokens`, hourly: deletes refresh tokens past their expiry (an expired
/// token is refused exactly like a missing one, rotation reuse included) and authorization
/// codes a day past theirs — a used code is kept that long so that replaying it still revokes
/// the refresh-token family issued from it (RFC 6749 §4.1.2). Deletes at most `batch` of each
/// per run; a full batch enqueues another run at once, so a backlog drains in short
/// transactions.
package enum AuthJobs {
  package static let purgeKind = "auth.purge_expired_tokens"
  package static let purge = RecurringJob(kind: purgeKind, every: .seconds(3600))
  package static let codeReplayWindowMs: Int64 = 24 * 3600 * 1000
  package static let batch = 5000

  package static func handlers(
    tokens: any TokenRepository, now: @escaping @Sendable () -> Int64, logger: Logger, batch: Int = batch
  ) -> [JobHandler] {
    [
      JobHandler(kind: purgeKind) { _, uow in
        let now = now()
        let purged = try await tokens.purgeExpired(tokensExpiredByMs: now, codesExpiredByMs: now - codeReplayWindowMs, limit: batch, in: uow)
        if purged.refreshTokens >= batch || purged.authCodes >= batch {
          try await JobQueue.enqueue(kind: purgeKind, maxAttempts: purge.maxAttempts, in: uow)
        }
        if purged.refreshTokens > 0 || purged.authCodes > 0 {
          uow.afterCommit {
            logger.info(
              "purged expired tokens",
              metadata: ["refresh_tokens": .stringConvertible(purged.refreshTokens), "auth_codes": .stringConvertible(purged.authCodes)])
          }
        }
      }
    ]
  }
}
