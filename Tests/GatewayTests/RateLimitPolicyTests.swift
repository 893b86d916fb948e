import ServiceKit
import XCTest

@testable import Gateway

/// The rate-limit decisions without sockets: the clock is a fixed instant moved by hand.
final class RateLimitPolicyTests: XCTestCase {
  let start = ContinuousClock.now

  func testABurstIsAllowedThenRefusedWithWhenToComeBack() {
    var policy = RateLimitPolicy(perSecond: 1, burst: 3, maxBuckets: 10)
    let caller = RateLimitPartition.address("192.0.2.1")
    let remaining = (0..<3).map { _ in policy.take(caller, now: self.start) }
    XCTAssertEqual(remaining.map(\.allowed), [true, true, true])
    XCTAssertEqual(remaining.map(\.remaining), [2, 1, 0])
    // Full again after as many seconds as tokens are missing.
    XCTAssertEqual(remaining.map(\.reset), [1, 2, 3])
    let refused = policy.take(caller, now: self.start)
    XCTAssertFalse(refused.allowed)
    XCTAssertEqual(refused.remaining, 0)
    XCTAssertEqual(refused.reset, 1)
    XCTAssertEqual(refused.quota, 3)
    XCTAssertEqual(refused.window, 3)
    XCTAssertEqual(refused.policy, "ip")
  }

  func testPeekAnswersLikeTakeWithoutTaking() {
    var policy = RateLimitPolicy(perSecond: 1, burst: 2, maxBuckets: 10)
    let caller = RateLimitPartition.address("192.0.2.9")
    for _ in 0..<5 { XCTAssertTrue(policy.peek(caller, now: self.start).allowed) }
    XCTAssertEqual(policy.bucketCount, 0, "a peek makes no bucket")
    _ = policy.take(caller, now: self.start)
    _ = policy.take(caller, now: self.start)
    let peeked = policy.peek(caller, now: self.start)
    XCTAssertFalse(peeked.allowed)
    XCTAssertEqual(peeked.reset, 1)
    XCTAssertTrue(policy.peek(caller, now: self.start + .seconds(1)).allowed, "refilled by then")
    XCTAssertFalse(policy.peek(caller, now: self.start).allowed, "and peeking took nothing")
  }

  func testTokensRefillAtTheRateAndNoFurtherThanTheBurst() {
    var policy = RateLimitPolicy(perSecond: 2, burst: 2, maxBuckets: 10)
    let caller = RateLimitPartition.user("u1")
    XCTAssertTrue(policy.take(caller, now: self.start).allowed)
    XCTAssertTrue(policy.take(caller, now: self.start).allowed)
    XCTAssertFalse(policy.take(caller, now: self.start).allowed)
    // Half a second at 2/s is one token, and only one.
    XCTAssertTrue(policy.take(caller, now: self.start + .milliseconds(500)).allowed)
    XCTAssertFalse(policy.take(caller, now: self.start + .milliseconds(500)).allowed)
    // A long idle time refills to the burst, not beyond.
    let later = self.start + .seconds(60)
    XCTAssertEqual((0..<3).map { _ in policy.take(caller, now: later).allowed }, [true, true, false])
    // A refusal 0.25 s short of a token still says 1 s (Retry-After has no fractions).
    XCTAssertEqual(policy.take(caller, now: later + .milliseconds(250)).reset, 1)
  }

  func testKeysUsersAndAddressesHaveSeparateBuckets() {
    var policy = RateLimitPolicy(perSecond: 1, burst: 1, maxBuckets: 10)
    let callers: [RateLimitPartition] = [.apiKey("k1"), .apiKey("k2"), .user("u1"), .user("u2"), .address("u1"), .address("::1")]
    XCTAssertEqual(callers.map { policy.take($0, now: self.start).allowed }, Array(repeating: true, count: 6))
    XCTAssertEqual(callers.map { policy.take($0, now: self.start).allowed }, Array(repeating: false, count: 6))
    XCTAssertEqual(callers.map(\.policyName), ["api-key", "api-key", "user", "user", "ip", "ip"])
  }

  func testTheNumberOfBucketsIsBounded() {
    var policy = RateLimitPolicy(perSecond: 1, burst: 1, maxBuckets: 100)
    // A flood of distinct addresses, all active at once: never more than the bound.
    for n in 0..<1_000 { _ = policy.take(.address("10.0.\(n / 256).\(n % 256)"), now: self.start) }
    XCTAssertLessThanOrEqual(policy.bucketCount, 100)
    XCTAssertGreaterThanOrEqual(policy.bucketCount, 90)
    // The most recent caller kept its (empty) bucket; the oldest was dropped for a fresh one.
    XCTAssertFalse(policy.take(.address("10.0.3.231"), now: self.start).allowed)
    XCTAssertTrue(policy.take(.address("10.0.0.0"), now: self.start).allowed)
    // Buckets that refilled are dropped first: once the table is full again, a newcomer
    // after the refill time clears every idle one rather than only the oldest tenth.
    for n in 0..<9 { _ = policy.take(.address("172.16.0.\(n)"), now: self.start) }
    XCTAssertEqual(policy.bucketCount, 100)
    _ = policy.take(.address("198.51.100.7"), now: self.start + .seconds(5))
    XCTAssertEqual(policy.bucketCount, 1)
  }

  func testHeadersFollowTheRateLimitFieldsDraftAndTheOlderTrio() {
    var policy = RateLimitPolicy(perSecond: 100, burst: 100, maxBuckets: 10)
    let allowed = policy.take(.apiKey("k"), now: self.start)
    XCTAssertEqual(
      allowed.headers.map { "\($0.0): \($0.1)" },
      [
        #"RateLimit-Policy: "api-key";q=100;w=1"#, #"RateLimit: "api-key";r=99;t=1"#, "X-RateLimit-Limit: 100",
        "X-RateLimit-Remaining: 99", "X-RateLimit-Reset: 1",
      ])
    var refusedPolicy = RateLimitPolicy(perSecond: 0.5, burst: 1, maxBuckets: 10)
    _ = refusedPolicy.take(.user("u"), now: self.start)
    let refused = refusedPolicy.take(.user("u"), now: self.start)
    XCTAssertEqual(refused.headers.last.map { "\($0.0): \($0.1)" }, "Retry-After: 2")
    XCTAssertTrue(refused.headers.contains { $0 == ("RateLimit", #""user";r=0;t=2"#) })
    XCTAssertFalse(allowed.headers.contains { $0.0 == "Retry-After" })
  }

  func testSettingsReadTheLimitsAndZeroTurnsThemOff() throws {
    let base = ["auth-target": "127.0.0.1:1", "quiz-target": "127.0.0.1:2", "scoring-target": "127.0.0.1:3"]
    let defaults = try GatewaySettings(layers: ConfigLayers(environment: [:], flags: base))
    XCTAssertEqual(defaults.rateLimit, RateLimit(perSecond: 100, burst: 200))
    let small = try GatewaySettings(layers: ConfigLayers(environment: [:], flags: base.merging(["rate-limit": "2", "rate-limit-burst": "3"]) { $1 }))
    XCTAssertEqual(small.rateLimit, RateLimit(perSecond: 2, burst: 3))
    let off = try GatewaySettings(layers: ConfigLayers(environment: [:], flags: base.merging(["rate-limit": "0"]) { $1 }))
    XCTAssertNil(off.rateLimit)
    XCTAssertThrowsError(try GatewaySettings(layers: ConfigLayers(environment: [:], flags: base.merging(["rate-limit": "fast"]) { $1 })))
  }

  func testBearerTokensAreReadCaseInsensitively() {
    XCTAssertEqual(GatewayResponder.bearerToken("Bearer abc"), "abc")
    XCTAssertEqual(GatewayResponder.bearerToken("bearer  abc "), "abc")
    XCTAssertNil(GatewayResponder.bearerToken("Basic abc"))
    XCTAssertNil(GatewayResponder.bearerToken("Bearer "))
    XCTAssertNil(GatewayResponder.bearerToken(nil))
  }
}
