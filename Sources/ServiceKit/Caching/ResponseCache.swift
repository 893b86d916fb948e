import Synchronization

/// An in-process cache-aside store for responses: LRU bounded by entries and by bytes,
/// entries expire after a TTL (on an injectable clock), and entries carry tags so one
/// write drops exactly the entries that showed what it changed (`invalidate(tag:)`).
///
/// What goes in is the caller's decision and responsibility: cache only what every caller
/// who can hit the key may see (the quiz service caches only what an anonymous caller may
/// see — published quizzes without answer keys — so no key can leak anything).
///
/// Fill races are closed with tickets: take `ticket()` before reading the source, pass it
/// to `insert`; if any of the entry's tags was invalidated (or the cache flushed) after
/// the ticket, the insert is refused, so a value read before a write can't be cached after
/// that write's invalidation.
public final class ResponseCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
  public struct Limits: Sendable, Hashable {
    public var maxEntries: Int
    public var maxBytes: Int
    public var ttl: Duration
    public init(maxEntries: Int = 10_000, maxBytes: Int = 64 << 20, ttl: Duration = .seconds(30)) {
      self.maxEntries = maxEntries
      self.maxBytes = maxBytes
      self.ttl = ttl
    }
  }

  /// Monotonic time; tests pass their own.
  public typealias Clock = @Sendable () -> ContinuousClock.Instant

  /// Taken before reading the source of a value; see the type's documentation.
  public struct Ticket: Sendable, Hashable {
    let epoch: UInt64
  }

  public let name: String
  public let limits: Limits
  private let now: Clock
  private let state: Mutex<LRUState<Key, Value>>

  public init(name: String, limits: Limits = Limits(), clock: @escaping Clock = { ContinuousClock.now }) {
    self.name = name
    self.limits = limits
    self.now = clock
    self.state = Mutex(LRUState())
  }

  public func ticket() -> Ticket { self.state.withLock { Ticket(epoch: $0.epoch) } }

  /// The live value for `key` (a hit moves it to the front), or nil (a miss; an expired
  /// entry is removed and counted as an expiry).
  public func value(for key: Key) -> Value? {
    let now = self.now()
    return self.state.withLock { state in
      guard let slot = state.index[key] else {
        state.stats.misses += 1
        return nil
      }
      if state.slots[slot].expires <= now {
        state.remove(slot)
        state.stats.expirations += 1
        state.stats.misses += 1
        return nil
      }
      state.moveToFront(slot)
      state.stats.hits += 1
      return state.slots[slot].value
    }
  }

  /// Stores `value` under `key`, costing `bytes`, tagged with `tags`, for the TTL;
  /// evicts least recently used entries until both bounds hold. Refused (false) when
  /// `ticket` is older than an invalidation of one of `tags` or a flush, or when the entry
  /// alone exceeds `maxBytes`.
  @discardableResult
  public func insert(_ value: Value, for key: Key, bytes: Int, tags: Set<String>, ticket: Ticket) -> Bool {
    let expires = self.now() + self.limits.ttl
    return self.state.withLock { state in
      guard bytes <= self.limits.maxBytes, self.limits.maxEntries > 0, state.accepts(ticket: ticket.epoch, tags: tags) else {
        state.stats.refused += 1
        return false
      }
      if let old = state.index[key] { state.remove(old) }
      state.add(Entry(key: key, value: value, bytes: bytes, tags: tags, expires: expires))
      while state.index.count > self.limits.maxEntries || state.bytes > self.limits.maxBytes, let last = state.tail {
        state.remove(last)
        state.stats.evictions += 1
      }
      state.stats.insertions += 1
      return true
    }
  }

  /// Drops every entry tagged `tag`; fills started before now won't store such entries.
  /// Returns how many were dropped.
  @discardableResult
  public func invalidate(tag: String) -> Int {
    self.state.withLock { state in
      state.epoch += 1
      state.invalidated(tag: tag)
      let slots = state.byTag[tag].map(Array.init) ?? []
      for slot in slots { state.remove(slot) }
      state.stats.invalidations += slots.count
      return slots.count
    }
  }

  /// Drops everything (e.g. change notifications may have been missed).
  public func flushAll() {
    self.state.withLock { state in
      state.epoch += 1
      state.floor = state.epoch
      state.stats.invalidations += state.index.count
      state.stats.flushes += 1
      state.removeAll()
    }
  }

  public var statistics: ResponseCacheStatistics {
    self.state.withLock { state in
      var stats = state.stats
      stats.entries = state.index.count
      stats.bytes = state.bytes
      return stats
    }
  }
}

/// Counters since the cache was made, and its current size.
public struct ResponseCacheStatistics: Sendable, Hashable {
  public var hits = 0
  public var misses = 0
  /// Entries dropped to stay within the entry and byte bounds.
  public var evictions = 0
  /// Entries found expired.
  public var expirations = 0
  /// Entries dropped by `invalidate(tag:)` or `flushAll()`.
  public var invalidations = 0
  public var flushes = 0
  public var insertions = 0
  /// Inserts refused: stale ticket or too large.
  public var refused = 0
  public var entries = 0
  public var bytes = 0

  public init() {}
}

/// Anything whose statistics go to a host's /metrics (`HostMetrics.observe(cache:)`).
public protocol ResponseCacheObservable: Sendable {
  var name: String { get }
  var statistics: ResponseCacheStatistics { get }
}

extension ResponseCache: ResponseCacheObservable {}

struct Entry<Key: Hashable, Value> {
  var key: Key
  var value: Value
  var bytes: Int
  var tags: Set<String>
  var expires: ContinuousClock.Instant
}
