import ServiceKit
import Synchronization

/// Whom a request counts against: the API key it carries, the user of a bearer token the
/// gateway verified itself (a forged `sub` never gets this far), or else the client address.
enum RateLimitPartition: Hashable, Sendable {
  case apiKey(String)
  case user(String)
  case address(String)

  /// The policy name in `RateLimit-Policy` / `RateLimit`.
  var policyName: String {
    switch self {
    case .apiKey: "api-key"
    case .user: "user"
    case .address: "ip"
    }
  }

  /// The bucket's key; the kind prefix keeps a user id from sharing an address's bucket.
  var bucketKey: String {
    switch self {
    case .apiKey(let key): "key:" + key
    case .user(let subject): "user:" + subject
    case .address(let address): "ip:" + address
    }
  }
}

/// One request's outcome and what its headers say about the quota.
struct RateLimitDecision: Sendable, Equatable {
  var allowed: Bool
  var policy: String
  /// The burst: the most requests at once (`q`, `X-RateLimit-Limit`).
  var quota: Int
  /// Seconds an empty bucket takes to fill again (`w`).
  var window: Int
  /// Whole requests left now (`r`, `X-RateLimit-Remaining`).
  var remaining: Int
  /// Seconds until the next request would be allowed (refused) or the bucket is full
  /// (allowed): `t`, `X-RateLimit-Reset`, and `Retry-After` on a refusal. Rounded up.
  var reset: Int

  /// The IETF httpapi ratelimit-headers fields (draft 09: a String item with `q`/`w`, and
  /// `r`/`t`) plus the older `X-RateLimit-*` trio most clients still read; `Retry-After`
  /// only on a refusal.
  var headers: [(String, String)] {
    var fields = [
      ("RateLimit-Policy", "\"\(self.policy)\";q=\(self.quota);w=\(self.window)"),
      ("RateLimit", "\"\(self.policy)\";r=\(self.remaining);t=\(self.reset)"),
      ("X-RateLimit-Limit", "\(self.quota)"),
      ("X-RateLimit-Remaining", "\(self.remaining)"),
      ("X-RateLimit-Reset", "\(self.reset)"),
    ]
    if !self.allowed { fields.append(("Retry-After", "\(self.reset)")) }
    return fields
  }
}

/// Token buckets (ServiceKit's `TokenBucket`) per partition, bounded in number. Pure: time is
/// passed in, so tests drive it with their own clock.
struct RateLimitPolicy: Sendable {
  let perSecond: Double
  let burst: Double
  let maxBuckets: Int
  private var buckets: [String: Entry] = [:]
  private var tick: UInt64 = 0

  private struct Entry: Sendable {
    var bucket: TokenBucket
    var lastUse: ContinuousClock.Instant
    var order: UInt64
  }

  init(perSecond: Double, burst: Double, maxBuckets: Int) {
    precondition(perSecond > 0 && burst >= 1 && maxBuckets >= 1)
    self.perSecond = perSecond
    self.burst = burst
    self.maxBuckets = maxBuckets
  }

  init(limit: RateLimit, maxBuckets: Int) {
    self.init(perSecond: limit.perSecond, burst: max(1, limit.burst), maxBuckets: maxBuckets)
  }

  var bucketCount: Int { self.buckets.count }

  /// What `take` would answer at `now`, without taking anything (or making a bucket).
  func peek(_ partition: RateLimitPartition, now: ContinuousClock.Instant) -> RateLimitDecision {
    var entry = self.buckets[partition.bucketKey] ?? Entry(bucket: self.freshBucket, lastUse: now, order: 0)
    return self.decision(partition, outcome: entry.bucket.take(now: now), tokens: entry.bucket.tokens)
  }

  private var freshBucket: TokenBucket { TokenBucket(capacity: self.burst, ratePerSecond: self.perSecond) }

  /// Takes one token from `partition`'s bucket at `now`.
  mutating func take(_ partition: RateLimitPartition, now: ContinuousClock.Instant) -> RateLimitDecision {
    let key = partition.bucketKey
    self.tick &+= 1
    if self.buckets[key] == nil, self.buckets.count >= self.maxBuckets { self.evict(now: now) }
    var entry = self.buckets[key] ?? Entry(bucket: self.freshBucket, lastUse: now, order: 0)
    let outcome = entry.bucket.take(now: now)
    entry.lastUse = now
    entry.order = self.tick
    self.buckets[key] = entry
    return self.decision(partition, outcome: outcome, tokens: entry.bucket.tokens)
  }

  private func decision(_ partition: RateLimitPartition, outcome: TokenBucket.Decision, tokens: Double) -> RateLimitDecision {

    let remaining = Int(tokens.rounded(.down))
    let reset: Int
    switch outcome {
    case .allowed:
      reset = Self.wholeSeconds((self.burst - tokens) / self.perSecond, atLeast: 0)
    case .denied(let retryAfter):
      reset = Self.wholeSeconds(retryAfter / .seconds(1), atLeast: 1)
    }
    return RateLimitDecision(
      allowed: outcome == .allowed, policy: partition.policyName, quota: Int(self.burst),
      window: Self.wholeSeconds(self.burst / self.perSecond, atLeast: 1), remaining: remaining, reset: reset)
  }

  /// Makes room for a new bucket. Buckets that have refilled by now are dropped first (a
  /// fresh bucket would be the same); if a flood of distinct callers is still active, the
  /// least recently used tenth goes, which at worst hands a forgotten caller a full bucket.
  private mutating func evict(now: ContinuousClock.Instant) {
    let refill = Duration.seconds(self.burst / self.perSecond)
    self.buckets = self.buckets.filter { now - $0.value.lastUse < refill }
    guard self.buckets.count >= self.maxBuckets else { return }
    let victims = self.buckets.sorted { $0.value.order < $1.value.order }.prefix(max(1, self.maxBuckets / 10))
    for (key, _) in victims { self.buckets.removeValue(forKey: key) }
  }

  private static func wholeSeconds(_ seconds: Double, atLeast floor: Int) -> Int {
    max(floor, Int((seconds - 1e-9).rounded(.up)))
  }
}

/// The policy shared by the responder's concurrent requests, on the real clock.
final class GatewayRateLimiter: Sendable {
  private let policy: Mutex<RateLimitPolicy>
  /// API keys the services refused (401), charged to the client address that sent them. An
  /// API key only names a bucket here (the services check it), so a client sending a fresh
  /// made-up key with every request would get a fresh bucket each time and pass every request
  /// on; once its address has had `keyRefusals.burst` keys refused (refilling at `perSecond`),
  /// its requests with API keys are 429 before any RPC. Valid keys are never charged.
  private let keyRefusals: Mutex<RateLimitPolicy>

  init(_ policy: RateLimitPolicy, keyRefusals: RateLimitPolicy? = nil) {
    self.policy = Mutex(policy)
    self.keyRefusals = Mutex(keyRefusals ?? RateLimitPolicy(perSecond: 1, burst: 10, maxBuckets: policy.maxBuckets))
  }

  func take(_ partition: RateLimitPartition) -> RateLimitDecision {
    let now = ContinuousClock.now
    return self.policy.withLock { $0.take(partition, now: now) }
  }

  /// Whether `address` may still present API keys (a denied decision when it may not).
  func keyRefusalsAllow(_ address: String) -> RateLimitDecision {
    let now = ContinuousClock.now
    return self.keyRefusals.withLock { $0.peek(.address(address), now: now) }
  }

  /// The services refused an API key `address` sent.
  func chargeKeyRefusal(_ address: String) {
    let now = ContinuousClock.now
    _ = self.keyRefusals.withLock { $0.take(.address(address), now: now) }
  }
}
