import Foundation
import SQLKit

/// One job of a service's queue, as claimed (or listed).
public struct Job: Sendable, Hashable {
  public enum State: String, Sendable, Hashable {
    /// Waiting for `runAtMs`, or claimed (`lockedUntilMs` in the future).
    case ready
    /// Out of attempts (or failed permanently): parked until `quizwire jobs retry`.
    case dead
  }

  public var id: Int64
  public var kind: String
  /// Opaque to the queue; never logged.
  public var payload: Data
  public var runAtMs: Int64
  /// Claims so far, this one included.
  public var attempts: Int
  public var maxAttempts: Int
  public var lockedBy: String?
  public var lockedUntilMs: Int64?
  public var lastError: String?
  public var uniqueKey: String?
  public var state: State
  public var createdMs: Int64
}

/// `complete` found the job no longer held by this claim: its visibility timeout ran out and
/// another worker claimed it (or an operator retried it). Thrown inside the effect's
/// transaction, it rolls the effect back, so only the current claim's effect commits.
public struct JobLost: Error, Sendable, Hashable, CustomStringConvertible {
  public var id: Int64
  public var kind: String
  public var description: String { "job \(self.id) (\(self.kind)) is no longer held by this claim (visibility timeout ran out?)" }
}

/// A service's job queue: a `jobs` table in its own database, so a job is enqueued in the same
/// unit of work as the change that asks for it (a rolled-back change enqueues nothing).
///
/// Workers `claim` due jobs (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claimers never
/// get the same row; SQLite: one `UPDATE … RETURNING` on the single writer connection). A claim
/// counts an attempt and hides the job for the visibility timeout; a worker that dies simply
/// lets it run out, and the job is claimed again. The effect of a job commits in one
/// transaction with `complete`, which deletes the row only if this claim still holds it and
/// throws `JobLost` otherwise: effects are exactly once even though runs are at least once.
/// `fail` reschedules with exponential backoff, or parks the job as `dead` once it is out of
/// attempts. Times are epoch milliseconds. Error texts are stored cut to `maxErrorLength`;
/// payloads are never logged.
public enum JobQueue {
  /// The longest error text stored with a job.
  public static let maxErrorLength = 1000
  public static let defaultMaxAttempts = 10

  public static func currentMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

  /// The `jobs` table as a schema step: add `JobQueue.migration(version: n)` to a service's
  /// migrations. `unique_key` is nullable and unique: many jobs without one, at most one with
  /// each key (a recurring job's slot is enqueued once however many replicas try).
  public static func migration(version: Int) -> Migration {
    Migration(version: version, name: "jobs", expandOnly: true) { dialect in
      let (id, blob) =
        dialect == .postgres
        ? ("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA")
        // AUTOINCREMENT: an id is never reused, so an old claim can never match a new job.
        : ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB")
      return [
        """
        CREATE TABLE jobs (
          id \(id), kind TEXT NOT NULL, payload \(blob), run_at_ms BIGINT NOT NULL,
          attempts BIGINT NOT NULL DEFAULT 0, max_attempts BIGINT NOT NULL, locked_until_ms BIGINT, locked_by TEXT,
          last_error TEXT, unique_key TEXT UNIQUE, state TEXT NOT NULL DEFAULT 'ready', created_ms BIGINT NOT NULL)
        """,
        "CREATE INDEX jobs_due ON jobs (state, run_at_ms, id)",
      ]
    }
  }

  // MARK: Producing

  /// Enqueues a job inside `uow` (the unit of work of the change that asks for it). With a
  /// `uniqueKey` that is already queued nothing is added and the result is nil.
  @discardableResult
  public static func enqueue(
    kind: String, payload: Data = Data(), runAtMs: Int64? = nil, uniqueKey: String? = nil,
    maxAttempts: Int = defaultMaxAttempts, nowMs: Int64 = currentMs(), in uow: UnitOfWork
  ) async throws -> Int64? {
    let row = try await uow.sql.raw(
      """
      INSERT INTO jobs (kind, payload, run_at_ms, attempts, max_attempts, unique_key, state, created_ms)
      VALUES (\(bind: kind), \(bind: payload), \(bind: runAtMs ?? nowMs), 0, \(bind: Int64(max(1, maxAttempts))),
              \(bind: uniqueKey), 'ready', \(bind: nowMs))
      ON CONFLICT (unique_key) DO NOTHING RETURNING id
      """
    ).first()
    return try row?.decode(column: "id", as: Int64.self)
  }

  // MARK: Working

  /// Claims up to `limit` due jobs of `kinds` for `worker`: each gets one more attempt and is
  /// hidden from other claims until `nowMs + visibility`. Jobs out of attempts are not claimed
  /// (`buryExhausted` parks them).
  public static func claim(
    worker: String, kinds: [String], limit: Int, visibility: Duration, nowMs: Int64 = currentMs(), in db: Database
  ) async throws -> [Job] {
    guard !kinds.isEmpty, limit > 0 else { return [] }
    let kinds = kinds.map { $0 as any Encodable & Sendable }
    let lockedUntil = nowMs + JobBackoff.milliseconds(visibility)
    // Whole statements per dialect: SQL here is only ever literals and binds (SQLSafetyTests).
    let rows: [any SQLRow]
    switch db.dialect {
    case .postgres:
      rows = try await db.transaction { uow in
        try await uow.sql.raw(
          """
          UPDATE jobs SET attempts = attempts + 1, locked_by = \(bind: worker), locked_until_ms = \(bind: lockedUntil)
          WHERE id IN (
            SELECT id FROM jobs WHERE state = 'ready' AND kind IN (\(binds: kinds)) AND run_at_ms <= \(bind: nowMs)
              AND (locked_until_ms IS NULL OR locked_until_ms <= \(bind: nowMs)) AND attempts < max_attempts
            ORDER BY run_at_ms, id LIMIT \(bind: limit) FOR UPDATE SKIP LOCKED)
          RETURNING id, kind, payload, run_at_ms, attempts, max_attempts, locked_until_ms, locked_by, last_error, unique_key, state, created_ms
          """
        ).all()
      }
    case .sqlite:
      // An idle poll must not take the one writer: look first on a reader.
      let due = try await db.read { uow in
        try await uow.sql.raw(
          """
          SELECT id FROM jobs WHERE state = 'ready' AND kind IN (\(binds: kinds)) AND run_at_ms <= \(bind: nowMs)
            AND (locked_until_ms IS NULL OR locked_until_ms <= \(bind: nowMs)) AND attempts < max_attempts LIMIT 1
          """
        ).first()
      }
      guard due != nil else { return [] }
      rows = try await db.transaction { uow in
        try await uow.sql.raw(
          """
          UPDATE jobs SET attempts = attempts + 1, locked_by = \(bind: worker), locked_until_ms = \(bind: lockedUntil)
          WHERE id IN (
            SELECT id FROM jobs WHERE state = 'ready' AND kind IN (\(binds: kinds)) AND run_at_ms <= \(bind: nowMs)
              AND (locked_until_ms IS NULL OR locked_until_ms <= \(bind: nowMs)) AND attempts < max_attempts
            ORDER BY run_at_ms, id LIMIT \(bind: limit))
          RETURNING id, kind, payload, run_at_ms, attempts, max_attempts, locked_until_ms, locked_by, last_error, unique_key, state, created_ms
          """
        ).all()
      }
    }
    return try rows.map(Self.job).sorted { ($0.runAtMs, $0.id) < ($1.runAtMs, $1.id) }
  }

  /// Finishes `job` in the effect's unit of work: deletes it if this claim still holds it,
  /// else throws `JobLost` (which rolls the effect back). Call it first in the transaction: on
  /// PostgreSQL the deleted row stays locked until commit, so no other claim can take it.
  public static func complete(_ job: Job, in uow: UnitOfWork) async throws {
    let rows = try await uow.sql.raw(
      """
      DELETE FROM jobs WHERE id = \(bind: job.id) AND locked_by = \(bind: job.lockedBy) AND attempts = \(bind: Int64(job.attempts))
      RETURNING id
      """
    ).all()
    guard !rows.isEmpty else { throw JobLost(id: job.id, kind: job.kind) }
  }

  public enum FailOutcome: Sendable, Hashable {
    /// Runs again at this time.
    case retry(atMs: Int64)
    /// Out of attempts (or failed permanently): parked.
    case dead
    /// Another claim holds it now; nothing changed.
    case lost
  }

  /// Records a failed attempt: the job runs again after `backoff`'s delay for this attempt, or
  /// becomes `dead` when it has had `maxAttempts` (at once when `permanent`). The lock is
  /// released either way.
  @discardableResult
  public static func fail(
    _ job: Job, error: String, permanent: Bool = false, backoff: JobBackoff = JobBackoff(), nowMs: Int64 = currentMs(),
    in uow: UnitOfWork
  ) async throws -> FailOutcome {
    let dead = permanent || job.attempts >= job.maxAttempts
    let runAt = dead ? nowMs : nowMs + JobBackoff.milliseconds(backoff.delay(afterAttempt: job.attempts))
    let rows = try await uow.sql.raw(
      """
      UPDATE jobs SET state = \(bind: dead ? Job.State.dead.rawValue : Job.State.ready.rawValue), run_at_ms = \(bind: runAt),
        locked_by = NULL, locked_until_ms = NULL, last_error = \(bind: Self.truncated(error))
      WHERE id = \(bind: job.id) AND locked_by = \(bind: job.lockedBy) AND attempts = \(bind: Int64(job.attempts)) RETURNING id
      """
    ).all()
    if rows.isEmpty { return .lost }
    return dead ? .dead : .retry(atMs: runAt)
  }

  /// Gives a claimed job back untried (a worker stopping before it got to it): the attempt is
  /// not counted and the job is claimable at once. False when the claim was lost meanwhile.
  @discardableResult
  public static func release(_ job: Job, in uow: UnitOfWork) async throws -> Bool {
    try await !uow.sql.raw(
      """
      UPDATE jobs SET attempts = attempts - 1, locked_by = NULL, locked_until_ms = NULL
      WHERE id = \(bind: job.id) AND locked_by = \(bind: job.lockedBy) AND attempts = \(bind: Int64(job.attempts)) RETURNING id
      """
    ).all().isEmpty
  }

  /// Parks jobs whose last claim ran out on their final attempt (the worker died or hung each
  /// time): they are never claimed again, so without this they would wait forever. Returns
  /// how many.
  @discardableResult
  public static func buryExhausted(nowMs: Int64 = currentMs(), in uow: UnitOfWork) async throws -> Int {
    let why = "the worker stopped or timed out on every attempt (visibility timeout ran out)"
    switch uow.dialect {
    case .postgres:
      return try await uow.sql.raw(
        """
        UPDATE jobs SET state = 'dead', locked_by = NULL, locked_until_ms = NULL, last_error = \(bind: why)
        WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' AND attempts >= max_attempts
          AND locked_until_ms IS NOT NULL AND locked_until_ms <= \(bind: nowMs) FOR UPDATE SKIP LOCKED) RETURNING id
        """
      ).all().count
    case .sqlite:
      return try await uow.sql.raw(
        """
        UPDATE jobs SET state = 'dead', locked_by = NULL, locked_until_ms = NULL, last_error = \(bind: why)
        WHERE state = 'ready' AND attempts >= max_attempts AND locked_until_ms IS NOT NULL AND locked_until_ms <= \(bind: nowMs)
        RETURNING id
        """
      ).all().count
    }
  }

  // MARK: Operating

  /// Dead jobs, oldest first.
  public static func dead(limit: Int = 100, in uow: UnitOfWork) async throws -> [Job] {
    try await uow.sql.raw(
      """
      SELECT id, kind, payload, run_at_ms, attempts, max_attempts, locked_until_ms, locked_by, last_error, unique_key, state, created_ms FROM jobs
      WHERE state = 'dead' ORDER BY id LIMIT \(bind: limit)
      """
    ).all().map(Self.job)
  }

  /// One job by id, nil when there is none (done jobs are deleted).
  public static func find(id: Int64, in uow: UnitOfWork) async throws -> Job? {
    try await uow.sql.raw(
      """
      SELECT id, kind, payload, run_at_ms, attempts, max_attempts, locked_until_ms, locked_by, last_error, unique_key, state, created_ms FROM jobs
      WHERE id = \(bind: id)
      """
    ).first().map(Self.job)
  }

  /// Puts a dead job back in the queue with fresh attempts, due now. False when `id` is not a
  /// dead job.
  @discardableResult
  public static func retry(id: Int64, nowMs: Int64 = currentMs(), in uow: UnitOfWork) async throws -> Bool {
    try await !uow.sql.raw(
      """
      UPDATE jobs SET state = 'ready', attempts = 0, run_at_ms = \(bind: nowMs), locked_by = NULL, locked_until_ms = NULL
      WHERE id = \(bind: id) AND state = 'dead' RETURNING id
      """
    ).all().isEmpty
  }

  /// Jobs of one kind by where they are.
  public struct Counts: Sendable, Hashable {
    public var kind: String
    /// Due now and not claimed.
    public var due: Int
    /// Waiting for a later `run_at` (new, or backing off after a failure).
    public var scheduled: Int
    /// Claimed, visibility timeout not yet over.
    public var running: Int
    public var dead: Int
  }

  public static func counts(nowMs: Int64 = currentMs(), in uow: UnitOfWork) async throws -> [Counts] {
    let rows = try await uow.sql.raw(
      """
      SELECT kind,
        SUM(CASE WHEN state = 'ready' AND (locked_until_ms IS NULL OR locked_until_ms <= \(bind: nowMs)) AND run_at_ms <= \(bind: nowMs)
          THEN 1 ELSE 0 END) AS due,
        SUM(CASE WHEN state = 'ready' AND (locked_until_ms IS NULL OR locked_until_ms <= \(bind: nowMs)) AND run_at_ms > \(bind: nowMs)
          THEN 1 ELSE 0 END) AS scheduled,
        SUM(CASE WHEN state = 'ready' AND locked_until_ms > \(bind: nowMs) THEN 1 ELSE 0 END) AS running,
        SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead
      FROM jobs GROUP BY kind ORDER BY kind
      """
    ).all()
    return try rows.map { row in
      Counts(
        kind: try row.decode(column: "kind", as: String.self), due: Int(try row.decode(column: "due", as: Int64.self)),
        scheduled: Int(try row.decode(column: "scheduled", as: Int64.self)), running: Int(try row.decode(column: "running", as: Int64.self)),
        dead: Int(try row.decode(column: "dead", as: Int64.self)))
    }
  }

  // MARK: Rows

  static func job(_ row: any SQLRow) throws -> Job {
    Job(
      id: try row.decode(column: "id", as: Int64.self), kind: try row.decode(column: "kind", as: String.self),
      payload: try row.decode(column: "payload", as: Data?.self) ?? Data(), runAtMs: try row.decode(column: "run_at_ms", as: Int64.self),
      attempts: Int(try row.decode(column: "attempts", as: Int64.self)), maxAttempts: Int(try row.decode(column: "max_attempts", as: Int64.self)),
      lockedBy: try row.decode(column: "locked_by", as: String?.self), lockedUntilMs: try row.decode(column: "locked_until_ms", as: Int64?.self),
      lastError: try row.decode(column: "last_error", as: String?.self), uniqueKey: try row.decode(column: "unique_key", as: String?.self),
      state: Job.State(rawValue: try row.decode(column: "state", as: String.self)) ?? .dead,
      createdMs: try row.decode(column: "created_ms", as: Int64.self))
  }

  /// At most `maxErrorLength` characters, marked when cut.
  static func truncated(_ text: String) -> String {
    text.count <= Self.maxErrorLength ? text : String(text.prefix(Self.maxErrorLength - 1)) + "…"
  }
}
