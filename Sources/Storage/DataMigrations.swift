import Foundation
import SQLKit

/// A backfill, run by `Migrator.migrate` after the schema migrations, in batches: each batch is
/// its own short transaction (never the schema transaction) that also stores the batch's
/// returned cursor in `data_migrations`, so a batch's writes and the progress commit together
/// and an interrupted run resumes where it stopped, doing every row exactly once.
///
/// `batch(uow, cursor)` gets `nil` the first time and afterwards the cursor it returned last;
/// it does one bounded piece of work (say 100 rows after `cursor`, in key order) and returns
/// the next cursor, or `nil` when nothing is left. It must stay correct while the old code
/// keeps writing (dual writes), and use only bound parameters.
public struct DataMigration: Sendable {
  /// The schema migration it needs; data migrations run in this order (then list order).
  public let version: Int
  /// Its identity in `data_migrations`, with the service: never rename one that shipped.
  public let name: String
  public let batch: @Sendable (_ uow: UnitOfWork, _ cursor: String?) async throws -> String?
  /// Work done before each batch outside any transaction — remote calls, which must never
  /// hold a transaction open — given the cursor stored then. Another replica may move the
  /// cursor before the batch runs: the batch must check what `prepare` left for it and throw
  /// (the run fails and is retried) when it doesn't fit.
  public let prepare: (@Sendable (_ db: Database, _ cursor: String?) async throws -> Void)?

  public init(
    version: Int, name: String,
    batch: @escaping @Sendable (_ uow: UnitOfWork, _ cursor: String?) async throws -> String?,
    prepare: (@Sendable (_ db: Database, _ cursor: String?) async throws -> Void)? = nil
  ) {
    self.version = version
    self.name = name
    self.batch = batch
    self.prepare = prepare
  }
}

extension Migrator {
  /// Runs one data migration to the end, batch by batch (returns at once when it finished
  /// before). Replicas running it together take turns: each batch locks the progress row
  /// (`FOR UPDATE` on PostgreSQL, SQLite's write lock) and reads the cursor under it. Public
  /// for data migrations that need more than the database (see `ModuleParts.dataMigrations`):
  /// a failed run resumes after the last committed batch.
  public func runDataMigration(_ data: DataMigration, _ db: Database) async throws {
    try await db.transaction { uow -> Void in
      try await uow.sql.raw(
        """
        INSERT INTO data_migrations (service, name, cursor, batches, done_at_ms, updated_at_ms)
        VALUES (\(bind: self.service), \(bind: data.name), NULL, 0, NULL, \(bind: Self.nowMs()))
        ON CONFLICT (service, name) DO NOTHING
        """
      ).run()
    }
    while true {
      try Task.checkCancellation()
      if let prepare = data.prepare {
        let stored = try await db.read { uow -> (done: Bool, cursor: String?)? in
          guard
            let row = try await uow.sql.raw(
              """
              SELECT cursor, done_at_ms FROM data_migrations WHERE service = \(bind: self.service) AND name = \(bind: data.name)
              """
            ).first()
          else { return nil }
          let cursor: String? = try row.decodeNil(column: "cursor") ? nil : row.decode(column: "cursor", as: String.self)
          return (try !row.decodeNil(column: "done_at_ms"), cursor)
        }
        if stored?.done == true { return }
        try await prepare(db, stored?.cursor)
      }
      let finished = try await db.transaction { uow -> Bool in
        let progress: SQLQueryString
        if uow.dialect == .postgres {
          progress = """
            SELECT cursor, done_at_ms FROM data_migrations WHERE service = \(bind: self.service) AND name = \(bind: data.name) FOR UPDATE
            """
        } else {
          progress = """
            SELECT cursor, done_at_ms FROM data_migrations WHERE service = \(bind: self.service) AND name = \(bind: data.name)
            """
        }
        guard let row = try await uow.sql.raw(progress).first() else {
          throw MigrationError.badMigrationList("data migration \(data.name): its progress row is missing")
        }
        if try !row.decodeNil(column: "done_at_ms") { return true }
        let cursor: String? = try row.decodeNil(column: "cursor") ? nil : row.decode(column: "cursor", as: String.self)
        let next = try await data.batch(uow, cursor)
        if let next {
          guard next != cursor else {
            throw MigrationError.dataMigrationMadeNoProgress(service: self.service, name: data.name, cursor: next)
          }
          try await uow.sql.raw(
            """
            UPDATE data_migrations SET cursor = \(bind: next), batches = batches + 1, updated_at_ms = \(bind: Self.nowMs())
            WHERE service = \(bind: self.service) AND name = \(bind: data.name)
            """
          ).run()
          return false
        }
        let now = Self.nowMs()
        try await uow.sql.raw(
          """
          UPDATE data_migrations SET batches = batches + 1, done_at_ms = \(bind: now), updated_at_ms = \(bind: now)
          WHERE service = \(bind: self.service) AND name = \(bind: data.name)
          """
        ).run()
        return true
      }
      if finished { return }
    }
  }
}
