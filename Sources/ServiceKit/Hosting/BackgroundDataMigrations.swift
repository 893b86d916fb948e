import Logging
import ServiceLifecycle
import Storage

/// Runs a module's own data migrations (`ModuleParts.dataMigrations`) once the host's
/// migrations step has migrated the schema, in the background: the service serves meanwhile.
/// A failed run (say the service it asks is down) is logged and retried with exponential
/// backoff, resuming after its last committed batch, until it finishes or the host stops.
final class BackgroundDataMigrations: Service, Sendable {
  let migrator: Migrator
  let database: Database
  let logger: Logger
  let initialBackoff: Duration
  let maximumBackoff: Duration
  private let ready = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

  init(
    migrator: Migrator, database: Database, logger: Logger, initialBackoff: Duration = .seconds(1),
    maximumBackoff: Duration = .seconds(60)
  ) {
    self.migrator = migrator
    self.database = database
    self.logger = logger
    self.initialBackoff = initialBackoff
    self.maximumBackoff = maximumBackoff
  }

  /// Called by the migrations step once the schema is current.
  func schemaMigrated() {
    self.ready.continuation.yield()
    self.ready.continuation.finish()
  }

  func run() async throws {
    // The host stops its lifecycle services by graceful shutdown; a backfill just stops (it
    // resumes after its last committed batch on the next start).
    await cancelWhenGracefulShutdown { await self.runAll() }
    // Done (or stopping): a lifecycle service that returns ends the host's whole group, so
    // wait for the host to stop.
    try? await gracefulShutdown()
  }

  private func runAll() async {
    var waiting = self.ready.stream.makeAsyncIterator()
    // Nil: stopped before the schema was migrated (a failed start).
    guard await waiting.next() != nil else { return }
    for data in self.migrator.dataMigrations {
      var delay = self.initialBackoff
      var failures = 0
      while !Task.isCancelled {
        do {
          try await self.migrator.runDataMigration(data, self.database)
          if failures > 0 { self.logger.notice("data migration finished", metadata: ["data_migration": .string(data.name)]) }
          break
        } catch {
          if Task.isCancelled { return }
          failures += 1
          self.logger.warning(
            "data migration failed; retrying",
            metadata: [
              "data_migration": .string(data.name), "error": .string("\(error)"), "attempt": .stringConvertible(failures),
              "retry_in_ms": .stringConvertible(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000),
            ])
          try? await Task.sleep(for: delay)
          delay = min(delay * 2, self.maximumBackoff)
        }
      }
    }
  }
}
