import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Storage
import Synchronization

/// Runs a service's jobs (`JobQueue`): `concurrency` claim loops, each claiming up to
/// `batchSize` due jobs and running them one by one, every job's handler in one transaction
/// with `JobQueue.complete` (the effect and the completion commit together). A failed handler
/// leads to `JobQueue.fail` (retry with backoff, or dead). Idle loops poll at `pollInterval`,
/// doubling up to `maxPollInterval`. Beside them a maintenance loop keeps every recurring job's
/// next slot enqueued and parks jobs whose workers died on their final attempt.
///
/// A swift-service-lifecycle `Service`: on graceful shutdown (or `stop()`) each loop finishes
/// the job it is running, gives the rest of its batch back untried and returns; cancellation
/// rolls a running job's transaction back. With `startImmediately: false` it waits for
/// `start()` (the host opens it once migrations ran). `jobs_processed_total{kind,outcome}`
/// counts outcomes (`done`, `retry`, `dead`, `lost`) once `useMetrics` gave it a factory.
public final class JobWorker: Service, Sendable {
  public struct Config: Sendable, Hashable {
    public var concurrency = 2
    public var batchSize = 4
    public var pollInterval: Duration = .milliseconds(250)
    public var maxPollInterval: Duration = .seconds(2)
    /// How long a claim hides a job; a job must finish within it or may run again elsewhere
    /// (its first run's effect then rolls back).
    public var visibility: Duration = .seconds(60)
    public var backoff = JobBackoff()
    /// How often jobs abandoned on their final attempt are parked as dead.
    public var buryInterval: Duration = .seconds(15)
    public init() {}
  }

  /// `locked_by` of this worker's claims: host, process and a random part.
  public let id: String
  public let config: Config
  private let database: Database
  private let handlers: [String: JobHandler]
  private let recurring: [RecurringJob]
  private let logger: Logger
  private let stopping = Latch()
  private let started = Latch()
  private let metrics = Mutex<(any MetricsFactory)?>(nil)

  public init(
    database: Database, handlers: [JobHandler], recurring: [RecurringJob] = [], config: Config = Config(), logger: Logger,
    id: String? = nil, startImmediately: Bool = true
  ) {
    self.database = database
    self.handlers = Dictionary(handlers.map { ($0.kind, $0) }, uniquingKeysWith: { first, _ in first })
    self.recurring = recurring
    self.config = config
    self.logger = logger
    self.id = id ?? "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UUID().uuidString.prefix(8).lowercased())"
    if startImmediately { self.started.fire() }
  }

  /// Lets a worker made with `startImmediately: false` begin.
  public func start() { self.started.fire() }

  /// Stops like a graceful shutdown does.
  public func stop() { self.stopping.fire() }

  /// Where `jobs_processed_total` goes (the host's registry).
  public func useMetrics(_ factory: any MetricsFactory) { self.metrics.withLock { $0 = factory } }

  public var kinds: [String] { self.handlers.keys.sorted() }

  public func run() async throws {
    await withTaskCancellationHandler {
      await withGracefulShutdownHandler {
        await self.runUntilStopped()
      } onGracefulShutdown: {
        self.stopping.fire()
      }
    } onCancel: {
      self.stopping.fire()
    }
  }

  private func runUntilStopped() async {
    await Latch.first(self.started, self.stopping)
    guard !self.stopping.isFired else { return }
    for job in self.recurring where self.handlers[job.kind] == nil {
      self.logger.error("recurring job has no handler; it is never scheduled", metadata: ["kind": .string(job.kind)])
    }
    self.logger.info(
      "job worker started",
      metadata: [
        "worker": .string(self.id), "kinds": .string(self.kinds.joined(separator: ",")),
        "concurrency": .stringConvertible(self.config.concurrency),
      ])
    await withTaskGroup(of: Void.self) { group in
      for _ in 0..<max(1, self.config.concurrency) { group.addTask { await self.claimLoop() } }
      group.addTask { await self.maintenanceLoop() }
    }
    self.logger.info("job worker stopped", metadata: ["worker": .string(self.id)])
  }

  // MARK: Claiming and running

  private func claimLoop() async {
    var idle = self.config.pollInterval
    var failing = false
    while !self.stopping.isFired {
      let jobs: [Job]
      do {
        jobs = try await JobQueue.claim(
          worker: self.id, kinds: self.kinds, limit: self.config.batchSize, visibility: self.config.visibility, in: self.database)
        if failing {
          failing = false
          self.logger.notice("job claims work again", metadata: ["worker": .string(self.id)])
        }
      } catch {
        if !failing {
          failing = true
          self.logger.warning("cannot claim jobs; retrying", metadata: ["worker": .string(self.id), "error": .string("\(error)")])
        }
        await self.stopping.sleep(for: self.config.maxPollInterval)
        continue
      }
      if jobs.isEmpty {
        await self.stopping.sleep(for: idle)
        idle = min(idle * 2, self.config.maxPollInterval)
        continue
      }
      idle = self.config.pollInterval
      for (index, job) in jobs.enumerated() {
        if self.stopping.isFired {
          await self.release(Array(jobs[index...]))
          break
        }
        // Its claim ran out while earlier jobs of the batch ran: another worker may have it.
        if let until = job.lockedUntilMs, JobQueue.currentMs() >= until { continue }
        await self.process(job)
      }
    }
  }

  private func process(_ job: Job) async {
    guard let handler = self.handlers[job.kind] else { return }
    var metadata: Logger.Metadata = [
      "job_id": .stringConvertible(job.id), "kind": .string(job.kind), "attempt": .stringConvertible(job.attempts),
      "worker": .string(self.id),
    ]
    let start = ContinuousClock.now
    do {
      try await self.database.transaction { uow in
        // First: on PostgreSQL the deleted row stays locked, so no other claim takes it now.
        try await JobQueue.complete(job, in: uow)
        try await handler.run(job, uow)
      }
      metadata["duration_ms"] = .stringConvertible(RecurringJob.milliseconds(ContinuousClock.now - start))
      self.count(job.kind, "done")
      self.logger.debug("job done", metadata: metadata)
    } catch is JobLost {
      self.count(job.kind, "lost")
      self.logger.warning("job claim lost (visibility timeout ran out); its effect rolled back", metadata: metadata)
    } catch {
      await self.recordFailure(job, error: error, metadata: metadata)
    }
  }

  private func recordFailure(_ job: Job, error: any Error, metadata: Logger.Metadata) async {
    var metadata = metadata
    let text = JobWorker.describe(error)
    metadata["error"] = .string(text)
    do {
      let outcome = try await self.database.transaction { uow in
        try await JobQueue.fail(job, error: text, permanent: error is PermanentJobError, backoff: self.config.backoff, in: uow)
      }
      switch outcome {
      case .retry(let atMs):
        self.count(job.kind, "retry")
        metadata["retry_in_ms"] = .stringConvertible(max(0, atMs - JobQueue.currentMs()))
        self.logger.warning("job failed; it runs again later", metadata: metadata)
      case .dead:
        self.count(job.kind, "dead")
        self.logger.error("job failed for good; parked as dead (quizwire jobs list / retry)", metadata: metadata)
      case .lost:
        self.count(job.kind, "lost")
        self.logger.warning("job failed after its claim was lost", metadata: metadata)
      }
    } catch {
      // The claim runs out and the job is claimed again; this attempt still counts.
      metadata["record_error"] = .string("\(error)")
      self.logger.error("job failed and the failure could not be recorded", metadata: metadata)
    }
  }

  /// A stopping loop's unstarted jobs go back at once instead of after the visibility timeout.
  private func release(_ jobs: [Job]) async {
    do {
      try await self.database.transaction { uow in
        for job in jobs { try await JobQueue.release(job, in: uow) }
      }
    } catch {
      self.logger.notice(
        "could not give claimed jobs back; they run after the visibility timeout",
        metadata: ["worker": .string(self.id), "jobs": .stringConvertible(jobs.count), "error": .string("\(error)")])
    }
  }

  // MARK: Maintenance

  private func maintenanceLoop() async {
    var scheduled: [String: Int64] = [:]
    var lastBurial = ContinuousClock.now - self.config.buryInterval
    let shortest = self.recurring.map(\.every).min() ?? self.config.buryInterval
    let tick = max(min(self.config.buryInterval, shortest / 2), .milliseconds(20))
    while !self.stopping.isFired {
      for job in self.recurring where self.handlers[job.kind] != nil {
        let next = job.nextSlot(afterMs: JobQueue.currentMs())
        guard scheduled[job.kind] != next.slot else { continue }
        do {
          try await self.database.transaction { uow in
            try await JobQueue.enqueue(
              kind: job.kind, payload: job.payload, runAtMs: next.runAtMs, uniqueKey: job.uniqueKey(slot: next.slot),
              maxAttempts: job.maxAttempts, in: uow)
          }
          scheduled[job.kind] = next.slot
        } catch {
          self.logger.warning("cannot schedule a recurring job; retrying", metadata: ["kind": .string(job.kind), "error": .string("\(error)")])
        }
      }
      if ContinuousClock.now - lastBurial >= self.config.buryInterval {
        lastBurial = ContinuousClock.now
        do {
          let buried = try await self.database.transaction { uow in try await JobQueue.buryExhausted(in: uow) }
          if buried > 0 {
            self.logger.error("jobs abandoned on their final attempt; parked as dead", metadata: ["jobs": .stringConvertible(buried)])
            self.count("", "dead", by: buried)
          }
        } catch {
          self.logger.notice("cannot check for abandoned jobs", metadata: ["error": .string("\(error)")])
        }
      }
      await self.stopping.sleep(for: tick)
    }
  }

  private func count(_ kind: String, _ outcome: String, by amount: Int = 1) {
    guard let factory = self.metrics.withLock({ $0 }) else { return }
    Counter(label: "jobs_processed_total", dimensions: [("kind", kind), ("outcome", outcome)], factory: factory).increment(by: amount)
  }

  /// An error as stored with the job: its description, one line.
  static func describe(_ error: any Error) -> String {
    "\(error)".replacingOccurrences(of: "\n", with: " ")
  }
}

/// Fires once; tasks wait for it, or sleep until it fires.
final class Latch: Sendable {
  private struct State {
    var fired = false
    var next = 0
    var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    var cancelled: Set<Int> = []
  }
  private let state = Mutex(State())

  var isFired: Bool { self.state.withLock { $0.fired } }

  func fire() {
    let waiters = self.state.withLock { s -> [CheckedContinuation<Void, Never>] in
      s.fired = true
      defer { s.waiters = [:] }
      return Array(s.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once fired, or when the task is cancelled.
  func wait() async {
    let id = self.state.withLock { s -> Int in
      defer { s.next += 1 }
      return s.next
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let now = self.state.withLock { s -> Bool in
          if s.fired || s.cancelled.remove(id) != nil { return true }
          s.waiters[id] = continuation
          return false
        }
        if now { continuation.resume() }
      }
    } onCancel: {
      let waiter = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
        if let waiter = s.waiters.removeValue(forKey: id) { return waiter }
        s.cancelled.insert(id)
        return nil
      }
      waiter?.resume()
    }
  }

  /// Sleeps for `duration`, or less when fired meanwhile.
  func sleep(for duration: Duration) async {
    guard !self.isFired else { return }
    await withTaskGroup(of: Void.self) { group in
      group.addTask { try? await Task.sleep(for: duration) }
      group.addTask { await self.wait() }
      await group.next()
      group.cancelAll()
    }
  }

  /// Returns once either fired.
  static func first(_ a: Latch, _ b: Latch) async {
    await withTaskGroup(of: Void.self) { group in
      group.addTask { await a.wait() }
      group.addTask { await b.wait() }
      await group.next()
      group.cancelAll()
    }
  }
}
