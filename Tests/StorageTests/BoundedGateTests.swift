import Storage
import Synchronization
import XCTest

/// The FIFO gate behind SQLite's writer, the connection pools and the hashing threads, driven
/// directly: no database, no sockets.
final class BoundedGateTests: XCTestCase {
  /// Holds the gate's only permit until `release()`.
  final class Holder: Sendable {
    let task: Task<Void, any Error>
    private let stop: AsyncStream<Void>.Continuation

    init(_ gate: BoundedGate) {
      let (stream, stop) = AsyncStream<Void>.makeStream()
      self.stop = stop
      self.task = Task { try await gate.withPermit { for await _ in stream {} } }
    }

    func release() async throws {
      self.stop.finish()
      try await self.task.value
    }
  }

  /// Shared state for the tasks of one test.
  final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { self.mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { self.mutex.withLock { body(&$0) } }
  }

  static func eventually(_ what: String, _ condition: () -> Bool) async throws {
    let end = ContinuousClock.now + .seconds(5)
    while !condition() {
      guard ContinuousClock.now < end else {
        XCTFail("timed out waiting for: \(what)")
        throw CancellationError()
      }
      try await Task.sleep(for: .milliseconds(5))
    }
  }

  func testWaitersAreServedInArrivalOrder() async throws {
    let gate = BoundedGate(name: "writer", limits: .init(permits: 1, maxWaiting: 16, waitTimeout: .seconds(10)))
    let holder = Holder(gate)
    try await Self.eventually("the holder has the permit") { gate.snapshot.inUse == 1 }
    let order = Locked<[Int]>([])
    var waiters: [Task<Void, any Error>] = []
    for i in 0..<6 {
      waiters.append(Task { try await gate.withPermit { order.withLock { $0.append(i) } } })
      // Each one queued before the next starts: arrival order is known.
      try await Self.eventually("waiter \(i) queued") { gate.snapshot.waiting == i + 1 }
    }
    try await holder.release()
    for waiter in waiters { try await waiter.value }
    XCTAssertEqual(order.withLock { $0 }, [0, 1, 2, 3, 4, 5])
    let after = gate.snapshot
    XCTAssertEqual(after.inUse, 0)
    XCTAssertEqual(after.waiting, 0)
    XCTAssertEqual(after.waitedTotal, 6, "every waiter got its permit after waiting")
    XCTAssertGreaterThan(after.waitSecondsTotal, 0)
  }

  func testAWaitIsBoundedAndRefusedWithARetryHint() async throws {
    let gate = BoundedGate(name: "writer", limits: .init(permits: 1, maxWaiting: 16, waitTimeout: .milliseconds(100)))
    let holder = Holder(gate)
    try await Self.eventually("the holder has the permit") { gate.snapshot.inUse == 1 }
    let start = ContinuousClock.now
    do {
      try await gate.withPermit { XCTFail("must not get the permit while it is held") }
    } catch let refusal as BoundedGate.Refusal {
      XCTAssertEqual(refusal.reason, .timedOut)
      XCTAssertGreaterThanOrEqual(refusal.waited, .milliseconds(100))
      XCTAssertTrue((Duration.milliseconds(50)...Duration.seconds(5)).contains(refusal.retryAfter), "\(refusal.retryAfter)")
    }
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(3), "refused at the wait limit, not later")
    XCTAssertEqual(gate.snapshot.refusedTotal[.timedOut], 1)
    XCTAssertEqual(gate.snapshot.waiting, 0, "the refused waiter left the queue")
    try await holder.release()
    try await gate.withPermit {}  // the permit was not lost
    XCTAssertEqual(gate.snapshot.inUse, 0)
  }

  func testAFullQueueIsRefusedAtOnce() async throws {
    let gate = BoundedGate(name: "readers", limits: .init(permits: 1, maxWaiting: 1, waitTimeout: .seconds(10)))
    let holder = Holder(gate)
    try await Self.eventually("the holder has the permit") { gate.snapshot.inUse == 1 }
    let queued = Task { try await gate.withPermit {} }
    try await Self.eventually("one waiter queued") { gate.snapshot.waiting == 1 }
    let start = ContinuousClock.now
    do {
      try await gate.withPermit { XCTFail("must be refused") }
      XCTFail("must be refused")
    } catch let refusal as BoundedGate.Refusal {
      XCTAssertEqual(refusal.reason, .queueFull)
      XCTAssertEqual(refusal.waiting, 1)
    }
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(1), "no wait when the line is full")
    XCTAssertEqual(gate.snapshot.refusedTotal[.queueFull], 1)
    try await holder.release()
    try await queued.value
  }

  func testACancelledWaiterLeavesTheQueue() async throws {
    let gate = BoundedGate(name: "writer", limits: .init(permits: 1, maxWaiting: 16, waitTimeout: .seconds(30)))
    let holder = Holder(gate)
    try await Self.eventually("the holder has the permit") { gate.snapshot.inUse == 1 }
    let ran = Locked(false)
    let cancelled = Task { try await gate.withPermit { ran.withLock { $0 = true } } }
    try await Self.eventually("the waiter is queued") { gate.snapshot.waiting == 1 }
    let start = ContinuousClock.now
    cancelled.cancel()
    let result = await cancelled.result
    XCTAssertThrowsError(try result.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(5), "left at once, not at the 30 s wait limit")
    XCTAssertEqual(gate.snapshot.waiting, 0)
    try await holder.release()
    XCTAssertFalse(ran.withLock { $0 }, "a cancelled waiter never runs")
    XCTAssertEqual(gate.snapshot.inUse, 0, "its permit was not handed to nobody")
    try await gate.withPermit {}
  }

  func testPermitsAreSharedUpToTheLimit() async throws {
    let gate = BoundedGate(name: "readers", limits: .init(permits: 3, maxWaiting: 64, waitTimeout: .seconds(10)))
    let peak = Locked((now: 0, max: 0))
    try await withThrowingTaskGroup(of: Void.self) { group in
      for _ in 0..<40 {
        group.addTask {
          try await gate.withPermit {
            peak.withLock {
              $0.now += 1; $0.max = max($0.max, $0.now)
            }
            try await Task.sleep(for: .milliseconds(2))
            peak.withLock { $0.now -= 1 }
          }
        }
      }
      try await group.waitForAll()
    }
    let most = peak.withLock { $0.max }
    XCTAssertLessThanOrEqual(most, 3, "never more holders than permits")
    XCTAssertGreaterThan(most, 1, "permits are shared, not taken one at a time")
    XCTAssertEqual(gate.snapshot.inUse, 0)
  }
}
