import Foundation
import Storage

/// How a module does one kind of job. `run` gets the job and the unit of work in which the job
/// is completed: whatever it writes there commits together with the completion, or not at all
/// (it throws, or the claim was lost), so its effect happens exactly once. Throwing schedules a
/// retry with backoff; `PermanentJobError` parks the job as dead at once.
public struct JobHandler: Sendable {
  public var kind: String
  public var run: @Sendable (Job, UnitOfWork) async throws -> Void

  public init(kind: String, run: @escaping @Sendable (Job, UnitOfWork) async throws -> Void) {
    self.kind = kind
    self.run = run
  }
}

/// A failure retrying cannot fix (a payload that does not parse): the job is parked as dead on
/// the first attempt.
public struct PermanentJobError: Error, Sendable, CustomStringConvertible {
  public var reason: String
  public init(_ reason: String) { self.reason = reason }
  public var description: String { self.reason }
}

/// A job that runs every `every`, once per period however many workers run: each period
/// ("slot", counted from the Unix epoch) is enqueued with the unique key `<kind>@<slot>`, so
/// replicas enqueueing the same slot add it once. Its handler is an ordinary `JobHandler` of
/// the same kind; the worker keeps the next slot enqueued.
public struct RecurringJob: Sendable, Hashable {
  public var kind: String
  public var every: Duration
  public var payload: Data
  public var maxAttempts: Int

  public init(kind: String, every: Duration, payload: Data = Data(), maxAttempts: Int = 3) {
    self.kind = kind
    self.every = every
    self.payload = payload
    self.maxAttempts = maxAttempts
  }

  /// The first slot that starts after `nowMs`, and when it starts (epoch milliseconds).
  public func nextSlot(afterMs nowMs: Int64) -> (slot: Int64, runAtMs: Int64) {
    let period = max(Self.milliseconds(self.every), 1)
    let slot = nowMs / period + 1
    return (slot, slot * period)
  }

  /// The unique key of `slot`.
  public func uniqueKey(slot: Int64) -> String { "\(self.kind)@\(slot)" }

  static func milliseconds(_ d: Duration) -> Int64 {
    let (seconds, attoseconds) = d.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}

/// The job worker's settings (`quizwire serve`, `quizwire jobs work`).
public struct JobOptions: Sendable, Hashable {
  public static let keys: [ConfigKey] = [
    ConfigKey("jobs", "Run the service's job worker in this process (default on; --no-jobs leaves jobs to `quizwire jobs work`).", kind: .toggle),
    ConfigKey("jobs-concurrency", "Jobs this process runs at once (default 2)."),
    ConfigKey("jobs-visibility", "Seconds a claimed job stays hidden from other workers before it counts as abandoned (default 60)."),
  ]

  public var enabled = true
  public var concurrency = 2
  public var visibility: Duration = .seconds(60)

  public init() {}

  public init(layers: ConfigLayers) throws {
    self.enabled = try layers.bool("jobs", default: true)
    self.concurrency = try layers.int("jobs-concurrency", default: self.concurrency, in: 1...256)
    self.visibility = .milliseconds(Int64(try layers.double("jobs-visibility", default: 60, in: 1...86_400) * 1000))
  }

  /// A worker configuration with these settings.
  public var workerConfig: JobWorker.Config {
    var config = JobWorker.Config()
    config.concurrency = self.concurrency
    config.visibility = self.visibility
    return config
  }
}
