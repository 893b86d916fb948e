import Foundation
import Logging
import SQLKit
import ServiceKit
import ServiceLifecycle
import Storage
import Synchronization

/// Per-user play counters (answers given, time played), written behind: each answer adds to
/// an in-memory delta after its commit, and the deltas go to `user_stats` every `interval`,
/// as soon as `maxUpdates` answers are pending, and on drain (the host stops its lifecycle
/// services after the last call, the database last).
///
/// Loss window: what is pending when the process dies — at most `interval` (1 s) or
/// `maxUpdates` (500) answers. The counters are a projection of `attempt_events` like the
/// rest (`AttemptState.answersGiven` / `playedMs`), so `quizwire scoring rebuild-projections`
/// recomputes them exactly; nothing else depends on them being current.
public final class PlayCounters: Service, Sendable {
  public struct Delta: Sendable, Hashable {
    public var answers: Int64 = 0
    public var playedMs: Int64 = 0
    public init(answers: Int64 = 0, playedMs: Int64 = 0) {
      self.answers = answers
      self.playedMs = playedMs
    }
  }

  public struct Statistics: Sendable, Hashable {
    /// Answers recorded and not yet flushed.
    public var pending = 0
    public var flushedUpdates = 0
    public var flushes = 0
    public var failedFlushes = 0
    /// Age of the oldest pending update at the last flush (the lag the loss window bounds).
    public var lastLag: Duration = .zero
  }

  struct State {
    var deltas: [String: Delta] = [:]
    var updates = 0
    var oldest: ContinuousClock.Instant?
    var stats = Statistics()
  }

  private let state = Mutex(State())
  private let wake = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
  let db: Database
  let interval: Duration
  let maxUpdates: Int
  /// Users per transaction.
  let chunkSize: Int
  let logger: Logger
  /// After each committed chunk (fault injection in tests: a throw stops the flush there, as a
  /// killed process would).
  let afterChunk: @Sendable (Int) async throws -> Void

  public init(
    db: Database, interval: Duration = .seconds(1), maxUpdates: Int = 500, chunkSize: Int = 200, logger: Logger,
    afterChunk: @escaping @Sendable (Int) async throws -> Void = { _ in }
  ) {
    self.db = db
    self.interval = interval
    self.maxUpdates = max(1, maxUpdates)
    self.chunkSize = max(1, chunkSize)
    self.logger = logger
    self.afterChunk = afterChunk
  }

  public var statistics: Statistics {
    self.state.withLock { state in
      var stats = state.stats
      stats.pending = state.updates
      return stats
    }
  }

  /// Counts what an update of an attempt added (call after its commit).
  public func record(before: AttemptState, after: AttemptState) {
    self.record(
      userID: after.started.userID,
      Delta(answers: after.answersGiven - before.answersGiven, playedMs: after.playedMs - before.playedMs))
  }

  /// Adds `delta` to `userID`'s pending counters.
  public func record(userID: String, _ delta: Delta) {
    guard delta.answers != 0 || delta.playedMs != 0 else { return }
    let full = self.state.withLock { state -> Bool in
      state.deltas[userID, default: Delta()].answers += delta.answers
      state.deltas[userID, default: Delta()].playedMs += delta.playedMs
      state.updates += 1
      if state.oldest == nil { state.oldest = .now }
      return state.updates >= self.maxUpdates
    }
    if full { self.wake.continuation.yield() }
  }

  /// Writes every pending delta; returns the number of users written. A chunk that fails goes
  /// back to pending with everything after it (added to what arrived meanwhile).
  @discardableResult
  public func flush() async throws -> Int {
    let (taken, updates, oldest) = self.state.withLock { state in
      defer {
        state.deltas = [:]
        state.updates = 0
        state.oldest = nil
      }
      return (state.deltas, state.updates, state.oldest)
    }
    guard !taken.isEmpty else { return 0 }
    let users = taken.keys.sorted()
    var written = 0
    do {
      for start in stride(from: 0, to: users.count, by: self.chunkSize) {
        let chunk = users[start..<min(start + self.chunkSize, users.count)]
        try await self.db.transaction { uow in try await Self.write(chunk.map { ($0, taken[$0]!) }, in: uow) }
        written += chunk.count
        try await self.afterChunk(written)
      }
    } catch {
      let unwritten = users.dropFirst(written)
      self.state.withLock { state in
        for user in unwritten {
          state.deltas[user, default: Delta()].answers += taken[user]!.answers
          state.deltas[user, default: Delta()].playedMs += taken[user]!.playedMs
        }
        state.updates += unwritten.isEmpty ? 0 : max(1, updates * unwritten.count / users.count)
        state.oldest = state.oldest.map { min($0, oldest ?? $0) } ?? oldest
        state.stats.failedFlushes += 1
      }
      throw error
    }
    self.state.withLock { state in
      state.stats.flushes += 1
      state.stats.flushedUpdates += updates
      state.stats.lastLag = oldest.map { .now - $0 } ?? .zero
    }
    return written
  }

  static func write(_ rows: [(String, Delta)], in uow: UnitOfWork) async throws {
    let values = rows.map { user, d -> SQLQueryString in "(\(bind: user), 0, 0, 0, \(bind: d.answers), \(bind: d.playedMs))" }
    try await uow.write(
      "INSERT INTO user_stats (user_id, attempts, finished, total_score, answers_given, time_played_ms) VALUES "
        + values.joined(separator: ", ")
        + " ON CONFLICT (user_id) DO UPDATE SET answers_given = user_stats.answers_given + excluded.answers_given,"
        + " time_played_ms = user_stats.time_played_ms + excluded.time_played_ms")
  }

  /// Flushes every `interval` (sooner when `maxUpdates` are pending) until the host stops its
  /// lifecycle services, then once more.
  public func run() async throws {
    await withGracefulShutdownHandler {
      await withTaskGroup(of: Void.self) { group in
        group.addTask {
          for await _ in self.wake.stream { await self.flushLogged() }
        }
        group.addTask {
          while (try? await Task.sleep(for: self.interval)) != nil { self.wake.continuation.yield() }
        }
        await group.next()
        group.cancelAll()
      }
    } onGracefulShutdown: {
      self.wake.continuation.finish()
    }
    // The drain's flush: a failure is retried a few times, then logged with what is lost.
    for attempt in 1...3 {
      do {
        try await self.flush()
        return
      } catch {
        self.logger.warning(
          "cannot flush play counters", metadata: ["attempt": "\(attempt)", "pending": "\(self.statistics.pending)", "error": "\(error)"])
      }
    }
  }

  private func flushLogged() async {
    do { try await self.flush() } catch {
      self.logger.notice("cannot flush play counters; kept for the next flush", metadata: ["error": "\(error)"])
    }
  }

  /// `scoring_play_counters_pending`, `_flushed_total`, `_flush_failures_total` and
  /// `_lag_seconds` (age of the oldest update at the last flush) on `/metrics`.
  public func export(to metrics: HostMetrics) {
    let pending = metrics.registry.makeGauge(name: "scoring_play_counters_pending")
    let flushed = metrics.registry.makeCounter(name: "scoring_play_counters_flushed_total")
    let failures = metrics.registry.makeCounter(name: "scoring_play_counters_flush_failures_total")
    let lag = metrics.registry.makeGauge(name: "scoring_play_counters_lag_seconds")
    let last = Mutex(Statistics())
    metrics.onScrape("scoring.play_counters") {
      let now = self.statistics
      let before = last.withLock { l in
        defer { l = now }
        return l
      }
      pending.set(Double(now.pending))
      flushed.increment(by: Int64(now.flushedUpdates - before.flushedUpdates))
      failures.increment(by: Int64(now.failedFlushes - before.failedFlushes))
      lag.set(Double(now.lastLag.components.seconds) + Double(now.lastLag.components.attoseconds) / 1e18)
    }
  }
}
