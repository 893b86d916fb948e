import Logging
import ServiceLifecycle

/// Deletes expired idempotency records and single-use keys every `interval`, so the table holds
/// about a day of keys however few are ever sent again (a claim also purges its own key
/// lazily). Every replica sweeps; the deletes are idempotent.
struct GatewayStoreSweeper: Service {
  let store: GatewayStore
  let interval: Duration
  let logger: Logger

  func run() async throws {
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        do {
          let removed = try await self.store.sweep()
          if removed > 0 { self.logger.debug("gateway store swept", metadata: ["removed": "\(removed)"]) }
        } catch {
          // A database hiccup only delays the cleanup; the next round tries again.
          self.logger.warning("gateway store sweep failed", metadata: ["error": "\(error)"])
        }
        try? await Task.sleep(for: self.interval)
      }
    }
  }
}
