import BenchService
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import QuizwireProtos
import Synchronization

/// A shared countdown/gauge (an `Atomic` in a class so tasks can share it).
final class SharedCounter: Sendable {
  let value: Synchronization.Atomic<Int>
  init(_ v: Int) { self.value = Synchronization.Atomic(v) }
  /// Takes one; `false` once exhausted.
  func take() -> Bool { self.value.subtract(1, ordering: .relaxed).newValue >= 0 }
  func add(_ n: Int) -> Int { self.value.add(n, ordering: .relaxed).newValue }
}

/// The four call shapes of `bench.v1.EchoService` the generator can drive.
public enum LoadMethod: String, Sendable, CaseIterable {
  case unary = "bench.v1.EchoService/Unary"
  case serverStream = "bench.v1.EchoService/ServerStream"
  case clientStream = "bench.v1.EchoService/ClientStream"
  case bidi = "bench.v1.EchoService/Bidi"
}

/// One load run's shape. Every run is bounded by `duration` or `requests` (or both).
public struct LoadOptions: Sendable {
  public var method: LoadMethod = .unary
  /// Closed loop: this many calls in flight.
  public var concurrency = 1
  /// Open loop: calls started per second, regardless of completions.
  public var rate: Double?
  public var duration: Duration? = .seconds(10)
  public var requests: Int?
  public var payloadSize = 64
  /// Messages per stream for the streaming methods.
  public var messagesPerStream = 100
  /// Open loop: most calls in flight before new ones count as errors ("OVERLOADED").
  public var maxInFlight = 10_000

  public init() {}
}

/// Live counters for the progress line (lock-free; read from another task).
public final class LoadProgress: Sendable {
  let calls = Synchronization.Atomic<Int>(0)
  let errors = Synchronization.Atomic<Int>(0)
  let stopped = Synchronization.Atomic<Bool>(false)
  public init() {}
  public var completedCalls: Int { self.calls.load(ordering: .relaxed) }
  public var failedCalls: Int { self.errors.load(ordering: .relaxed) }
  /// Ends the run early (Ctrl-C); the report covers what finished.
  public func stop() { self.stopped.store(true, ordering: .relaxed) }
  public var isStopped: Bool { self.stopped.load(ordering: .relaxed) }
}

/// Drives `bench.v1.EchoService` over any GRPCCore transport and measures it.
public struct LoadGenerator: Sendable {
  public let options: LoadOptions
  public init(options: LoadOptions) { self.options = options }

  /// Per-worker tallies, merged at the end (no shared locks on the hot path).
  struct Tally: Sendable {
    var latency = LatencyRecorder()
    var calls = 0
    var messages = 0
    var bytes = 0
    var errors: [String: Int] = [:]
    mutating func merge(_ o: Tally) {
      latency.merge(o.latency)
      calls += o.calls
      messages += o.messages
      bytes += o.bytes
      errors.merge(o.errors, uniquingKeysWith: +)
    }
  }

  public func run<T: ClientTransport>(client: GRPCClient<T>, transportName: String, progress: LoadProgress = LoadProgress()) async -> LoadReport {
    let echo = Bench_V1_EchoService.Client(wrapping: client)
    let payload = Data(repeating: 0x51, count: self.options.payloadSize)
    return await self.drive(method: self.options.method.rawValue, transportName: transportName, progress: progress) { began, deadline, tally in
      await self.oneCall(echo: echo, payload: payload, began: began, deadline: deadline, tally: &tally, progress: progress)
    }
  }

  /// One call as the loops see it: when it was due, the run's deadline, the worker's tally.
  typealias Call = @Sendable (ContinuousClock.Instant, ContinuousClock.Instant?, inout Tally) async -> Void

  /// The closed or open loop around `call`, bounded by duration and request count.
  func drive(method: String, transportName: String, progress: LoadProgress, _ call: @escaping Call) async -> LoadReport {
    let start = ContinuousClock.now
    let deadline = self.options.duration.map { start + $0 }
    let budget = SharedCounter(self.options.requests ?? Int.max)
    let options = self.options
    let tally: Tally
    if let rate = options.rate {
      tally = await self.openLoop(rate: rate, start: start, deadline: deadline, budget: budget, progress: progress, call)
    } else {
      tally = await withTaskGroup(of: Tally.self) { group in
        for _ in 0..<max(1, options.concurrency) {
          group.addTask {
            var t = Tally()
            while !progress.isStopped {
              if let deadline, ContinuousClock.now >= deadline { break }
              if !budget.take() { break }
              await call(ContinuousClock.now, deadline, &t)
            }
            return t
          }
        }
        var all = Tally()
        for await t in group { all.merge(t) }
        return all
      }
    }
    let elapsed = ContinuousClock.now - start
    return LoadReport(
      method: method, transport: transportName,
      mode: options.rate.map { "open loop \(Int($0))/s" } ?? "closed loop c=\(options.concurrency)",
      calls: tally.calls, messages: tally.messages, elapsed: elapsed, bytes: tally.bytes, errors: tally.errors,
      latency: tally.latency, interrupted: progress.isStopped)
  }

  private func openLoop(
    rate: Double, start: ContinuousClock.Instant, deadline: ContinuousClock.Instant?, budget: SharedCounter, progress: LoadProgress,
    _ call: @escaping Call
  ) async -> Tally {
    let schedule = OpenLoopSchedule(rate: rate)
    let inFlight = SharedCounter(0)
    return await withTaskGroup(of: Tally.self) { group in
      var index = 0
      var overloaded = Tally()
      while !progress.isStopped {
        let due = start + schedule.dueOffset(of: index)
        if let deadline, due >= deadline { break }
        if !budget.take() { break }
        if due > ContinuousClock.now { try? await Task.sleep(until: due, tolerance: .microseconds(50)) }
        index += 1
        guard inFlight.add(1) <= self.options.maxInFlight else {
          _ = inFlight.add(-1)
          overloaded.errors["OVERLOADED", default: 0] += 1
          progress.errors.add(1, ordering: .relaxed)
          continue
        }
        group.addTask {
          var t = Tally()
          // Measured from when the call was due, not from when it could start.
          await call(due, deadline, &t)
          _ = inFlight.add(-1)
          return t
        }
      }
      var all = overloaded
      for await t in group { all.merge(t) }
      return all
    }
  }

  private func oneCall<T: ClientTransport>(
    echo: Bench_V1_EchoService.Client<T>, payload: Data, began: ContinuousClock.Instant, deadline: ContinuousClock.Instant?,
    tally: inout Tally, progress: LoadProgress
  ) async {
    var template = Bench_V1_EchoRequest()
    template.payload = payload
    if self.options.method == .serverStream { template.count = UInt32(self.options.messagesPerStream) }
    let request = template
    let n = self.options.messagesPerStream
    do {
      switch self.options.method {
      case .unary:
        _ = try await echo.unary(request)
        tally.messages += 2
        tally.bytes += 2 * payload.count
      case .serverStream:
        let got = try await echo.serverStream(request) { r in
          var c = 0
          for try await _ in r.messages { c += 1 }
          return c
        }
        tally.messages += 1 + got
        tally.bytes += payload.count * (1 + got)
      case .clientStream:
        _ = try await echo.clientStream(
          request: StreamingClientRequest { w in
            for _ in 0..<n { try await w.write(request) }
          })
        tally.messages += n + 1
        tally.bytes += payload.count * (n + 1)
      case .bidi:
        // Ping-pong: each message waits for its echo; every round trip is one latency sample.
        let (requests, continuation) = AsyncStream.makeStream(of: Bench_V1_EchoRequest.self)
        let before = tally
        let after = try await echo.bidi(request: StreamingClientRequest { w in for await r in requests { try await w.write(r) } }) { r in
          var t = before
          var sentAt = ContinuousClock.now
          continuation.yield(request)
          var received = 0
          for try await _ in r.messages {
            t.latency.record(ContinuousClock.now - sentAt)
            received += 1
            // A long stream also ends at the run's deadline or on Ctrl-C.
            if received == n || progress.isStopped || deadline.map({ ContinuousClock.now >= $0 }) == true {
              continuation.finish()
            } else {
              sentAt = ContinuousClock.now
              continuation.yield(request)
            }
          }
          t.messages += 2 * received
          t.bytes += 2 * payload.count * received
          return t
        }
        tally = after
        tally.calls += 1
        progress.calls.add(1, ordering: .relaxed)
        return
      }
      tally.latency.record(ContinuousClock.now - began)
      tally.calls += 1
      progress.calls.add(1, ordering: .relaxed)
    } catch {
      tally.failed(error, progress: progress)
    }
  }
}

extension LoadGenerator.Tally {
  /// A failed call, counted by its gRPC status name.
  mutating func failed(_ error: any Error, progress: LoadProgress) {
    let name = (error as? RPCError).map { "\($0.code)" } ?? "UNKNOWN"
    self.errors[name, default: 0] += 1
    progress.errors.add(1, ordering: .relaxed)
  }
}
