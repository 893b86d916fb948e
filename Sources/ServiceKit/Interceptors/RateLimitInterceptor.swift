import Foundation
import GRPCCore
import GRPCProtobuf
import NIOConcurrencyHelpers
import QuizwireProtos
import ServiceContextModule

/// A rate: `perSecond` on average with bursts up to `burst`.
public struct RateLimit: Sendable, Hashable {
  public var perSecond: Double
  public var burst: Double
  public init(perSecond: Double, burst: Double) {
    self.perSecond = perSecond
    self.burst = burst
  }
}

/// Token buckets keyed by caller, bounded in number (the least recently used are dropped
/// first, which at worst gives a forgotten caller a fresh bucket).
public final class RateLimiter: Sendable {
  private struct State {
    var buckets: [String: (bucket: TokenBucket, lastUse: UInt64)] = [:]
    var tick: UInt64 = 0
  }
  public let defaultLimit: RateLimit
  public let maxKeys: Int
  private let state = NIOLockedValueBox(State())

  public init(defaultLimit: RateLimit, maxKeys: Int = 100_000) {
    self.defaultLimit = defaultLimit
    self.maxKeys = maxKeys
  }

  /// Takes one token for `key` at `now`.
  public func take(key: String, limit: RateLimit? = nil, now: ContinuousClock.Instant = .now) -> TokenBucket.Decision {
    let limit = limit ?? self.defaultLimit
    return self.state.withLockedValue { state in
      state.tick &+= 1
      var entry =
        state.buckets.removeValue(forKey: key)
        ?? (TokenBucket(capacity: max(1, limit.burst), ratePerSecond: limit.perSecond), 0)
      if entry.bucket.capacity != max(1, limit.burst) || entry.bucket.ratePerSecond != limit.perSecond {
        // The limit for this key changed (an API key was edited): start from the new one.
        entry.bucket = TokenBucket(capacity: max(1, limit.burst), ratePerSecond: limit.perSecond)
      }
      let decision = entry.bucket.take(now: now)
      entry.lastUse = state.tick
      if state.buckets.count >= self.maxKeys {
        // Evict the least recently used tenth in one pass rather than one per call.
        let victims = state.buckets.sorted { $0.value.lastUse < $1.value.lastUse }.prefix(max(1, self.maxKeys / 10))
        for (k, _) in victims { state.buckets.removeValue(forKey: k) }
      }
      state.buckets[key] = entry
      return decision
    }
  }

  public var trackedKeys: Int { self.state.withLockedValue { $0.buckets.count } }
}

/// Per-principal rate limiting. Runs after authentication so the key is the principal (API
/// keys carry their own limit); anonymous callers are limited by peer address. A denied call
/// gets RESOURCE_EXHAUSTED with `retry-after-ms` in trailing metadata and a RetryInfo detail.
/// Health checks (`grpc.health.v1.Health`) count in a bucket of their own per caller: a retry
/// flood from an address must not starve that address's probes (a load balancer's, say).
public struct RateLimitInterceptor: ServerInterceptor {
  public static let retryAfterKey = "retry-after-ms"
  public let limiter: RateLimiter
  /// Peers (the gateway) whose `x-forwarded-for` keys an anonymous caller's bucket.
  public let trustedProxies: TrustedProxies

  public init(limiter: RateLimiter, trustedProxies: TrustedProxies = .none) {
    self.limiter = limiter
    self.trustedProxies = trustedProxies
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let principal = ServiceContext.current?.call?.principal
    var key = principal.map { $0.description } ?? self.anonymousKey(request.metadata, peer: context.remotePeer)
    if context.descriptor.service == Grpc_Health_V1_Health.descriptor { key = "health:" + key }
    switch self.limiter.take(key: key, limit: principal?.rateLimit) {
    case .allowed:
      return try await next(request, context)
    case .denied(let retryAfter):
      let ms = max(1, Int(retryAfter.inMilliseconds.rounded(.up)))
      var error = RPCError(
        GoogleRPCStatus(
          code: .resourceExhausted, message: "rate limit exceeded; retry after \(ms) ms",
          details: [.retryInfo(delay: .milliseconds(ms))]))
      error.metadata.addString(String(ms), forKey: Self.retryAfterKey)
      throw error
    }
  }

  /// An anonymous caller's bucket: its address, or the address a trusted proxy forwarded (the
  /// last `x-forwarded-for` entry: the one the proxy itself added).
  func anonymousKey(_ metadata: Metadata, peer: String) -> String {
    let host = Self.host(of: peer)
    if !self.trustedProxies.isEmpty, let colon = host.firstIndex(of: ":"),
      self.trustedProxies.contains(host: String(host[host.index(after: colon)...])),
      let forwarded = metadata[stringValues: "x-forwarded-for"].joined(separator: ",").split(separator: ",").last?
        .trimmingCharacters(in: .whitespaces), !forwarded.isEmpty, forwarded.count <= 64
    {
      return "forwarded:" + forwarded
    }
    return "peer:" + host
  }

  /// "ipv4:1.2.3.4:5678" → "ipv4:1.2.3.4": one bucket per address, not per connection.
  static func host(of peer: String) -> String {
    guard let colon = peer.lastIndex(of: ":"), peer.hasPrefix("ipv") else { return peer }
    return String(peer[..<colon])
  }
}
