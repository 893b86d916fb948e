import GRPCCore
import Synchronization
import XCTest

@testable import ServiceKit

final class CircuitBreakerTests: XCTestCase {
  let t0 = ContinuousClock.now

  func testOpensOnFailureRatioAndRefusesCalls() {
    var config = CircuitBreaker.Config()
    config.minimumCalls = 4
    config.windowSize = 4
    config.failureRatio = 0.5
    var b = CircuitBreaker(config: config)
    for ok in [true, false, true] {
      XCTAssertTrue(b.allowCall(now: t0))
      b.record(success: ok, now: t0)
    }
    XCTAssertEqual(b.state, .closed, "not enough calls yet")
    b.record(success: false, now: t0)
    XCTAssertEqual(b.state, .open(until: t0 + .seconds(5)))
    XCTAssertFalse(b.allowCall(now: t0 + .seconds(1)))
  }

  func testHalfOpenProbeClosesOnSuccessAndReopensOnFailure() {
    var config = CircuitBreaker.Config()
    config.minimumCalls = 1
    var b = CircuitBreaker(config: config)
    b.record(success: false, now: t0)
    XCTAssertTrue(b.allowCall(now: t0 + .seconds(5)), "one probe after the open period")
    XCTAssertFalse(b.allowCall(now: t0 + .seconds(5)), "only one probe at a time")
    b.record(success: false, now: t0 + .seconds(6))
    XCTAssertEqual(b.state, .open(until: t0 + .seconds(11)))
    XCTAssertTrue(b.allowCall(now: t0 + .seconds(11)))
    b.record(success: true, now: t0 + .seconds(11))
    XCTAssertEqual(b.state, .closed)
    XCTAssertTrue(b.allowCall(now: t0 + .seconds(11)))
  }

  /// A replica that is down (calls never sent: its connection fails) opens its breaker like
  /// one that answers with failures; once open, more of them change nothing, and the probe
  /// after the open period decides as usual.
  func testUnreachableReplicaOpensItsBreaker() {
    var config = CircuitBreaker.Config()
    config.minimumCalls = 3
    config.windowSize = 3
    let now = Mutex(self.t0)
    let breakers = ReplicaBreakers(replicas: 2, config: config, clock: { now.withLock { $0 } })
    for _ in 0..<2 { breakers.unreachable(replica: 0) }
    XCTAssertEqual(breakers.state(of: 0), .closed, "below the minimum number of calls")
    breakers.unreachable(replica: 0)
    XCTAssertEqual(breakers.state(of: 0), .open(until: self.t0 + config.openDuration))
    XCTAssertFalse(breakers.admit(replica: 0))
    XCTAssertTrue(breakers.admit(replica: 1), "the other replica is not affected")
    breakers.release(replica: 1)
    breakers.unreachable(replica: 0)
    XCTAssertEqual(breakers.state(of: 0), .open(until: self.t0 + config.openDuration), "still down: the open period is not extended")
    now.withLock { $0 = self.t0 + config.openDuration }
    XCTAssertTrue(breakers.admit(replica: 0), "the probe")
    breakers.record(replica: 0, failed: false)
    XCTAssertEqual(breakers.state(of: 0), .closed)
  }

  func testOldFailuresSlideOutOfTheWindow() {
    var config = CircuitBreaker.Config()
    config.windowSize = 4
    config.minimumCalls = 4
    config.failureRatio = 0.75
    var b = CircuitBreaker(config: config)
    for ok in [false, false, true, true, true, true, false, false] { b.record(success: ok, now: t0) }
    XCTAssertEqual(b.state, .closed, "only 2 of the last 4 failed")
  }
}

final class TokenBucketTests: XCTestCase {
  func testBurstThenRefillWithRetryHint() {
    let t0 = ContinuousClock.now
    var bucket = TokenBucket(capacity: 3, ratePerSecond: 10)
    for _ in 0..<3 { XCTAssertEqual(bucket.take(now: t0), .allowed) }
    XCTAssertEqual(bucket.take(now: t0), .denied(retryAfter: .milliseconds(100)))
    XCTAssertEqual(bucket.take(now: t0 + .milliseconds(100)), .allowed)
    XCTAssertEqual(bucket.take(now: t0 + .seconds(10)), .allowed, "refills up to capacity only")
    XCTAssertEqual(bucket.tokens, 2, accuracy: 1e-9)
  }
}

final class UnaryRetryPolicyTests: XCTestCase {
  let policy = UnaryRetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(80))
  func error(_ code: RPCError.Code, pushback: String? = nil) -> RPCError {
    var metadata: Metadata = [:]
    if let pushback { metadata.addString(pushback, forKey: "grpc-retry-pushback-ms") }
    return RPCError(code: code, message: "x", metadata: metadata)
  }

  func testOnlyRetryableCodesWithinTheAttemptsAreRetriedWithJitteredExponentialBackoff() {
    XCTAssertEqual(policy.delay(afterAttempt: 1, failedWith: error(.unavailable), remaining: nil, jitter: 1), .milliseconds(50))
    XCTAssertEqual(policy.delay(afterAttempt: 1, failedWith: error(.resourceExhausted), remaining: nil, jitter: 0.5), .milliseconds(25))
    // The second backoff doubles, capped at maxBackoff (100 → 80 ms).
    XCTAssertEqual(policy.delay(afterAttempt: 2, failedWith: error(.unavailable), remaining: nil, jitter: 1), .milliseconds(80))
    XCTAssertNil(policy.delay(afterAttempt: 3, failedWith: error(.unavailable), remaining: nil, jitter: 1), "three attempts in all")
    for code in [RPCError.Code.internalError, .deadlineExceeded, .notFound, .invalidArgument, .cancelled, .aborted] {
      XCTAssertNil(policy.delay(afterAttempt: 1, failedWith: error(code), remaining: nil, jitter: 1), "\(code)")
    }
    XCTAssertNil(UnaryRetryPolicy(maxAttempts: 1).delay(afterAttempt: 1, failedWith: error(.unavailable), remaining: nil, jitter: 1))
  }

  func testTheServersPushbackWinsAndNegativeOrGarbageMeansStop() {
    XCTAssertEqual(policy.delay(afterAttempt: 1, failedWith: error(.unavailable, pushback: "7"), remaining: nil, jitter: 1), .milliseconds(7))
    XCTAssertEqual(policy.delay(afterAttempt: 1, failedWith: error(.unavailable, pushback: "0"), remaining: nil, jitter: 1), .zero)
    XCTAssertNil(policy.delay(afterAttempt: 1, failedWith: error(.unavailable, pushback: "-1"), remaining: nil, jitter: 1))
    XCTAssertNil(policy.delay(afterAttempt: 1, failedWith: error(.unavailable, pushback: "soon"), remaining: nil, jitter: 1))
  }

  func testNoRetryThatCouldNotStartBeforeTheDeadline() {
    XCTAssertNil(policy.delay(afterAttempt: 1, failedWith: error(.unavailable), remaining: .milliseconds(40), jitter: 1))
    XCTAssertEqual(policy.delay(afterAttempt: 1, failedWith: error(.unavailable), remaining: .milliseconds(60), jitter: 1), .milliseconds(50))
    XCTAssertNil(policy.delay(afterAttempt: 1, failedWith: error(.unavailable, pushback: "100"), remaining: .milliseconds(60), jitter: 0))
  }

  func testTheClientConfigsKnobsAreThePolicys() {
    var config = ServiceClientConfig(replicas: ["a:1"])
    config.maxAttempts = 5
    config.initialBackoff = .milliseconds(10)
    config.maxBackoff = .milliseconds(20)
    XCTAssertEqual(config.unaryRetryPolicy, UnaryRetryPolicy(maxAttempts: 5, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(20)))
  }
}
