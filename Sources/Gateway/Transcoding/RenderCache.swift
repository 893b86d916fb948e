import DequeModule
import ServiceKit
import Synchronization

/// Rendered answers by the exact reply bytes they were rendered from: a read that returns the
/// same bytes again (a cached quiz, an unchanged page) skips decoding the protobuf and
/// encoding its JSON, about a sixth of the gateway's CPU per read.
///
/// Keyed by content, not by URL or caller: a hit needs the service to have answered this
/// request with byte-for-byte the same message, so the cache can never serve anything the
/// service didn't just say — no invalidation, no leak between callers. Bounded in bytes,
/// oldest entry out first.
final class RenderCache: Sendable {
  struct Key: Hashable, Sendable {
    /// Computed once, outside the lock.
    let hash: Int
    /// The response message's full name: the same bytes render differently per type.
    let type: String
    /// `?limit=`: it shows in `meta.pagination.limit`.
    let limit: Int?
    let reply: [UInt8]

    init(type: String, limit: Int?, reply: [UInt8]) {
      var hasher = Hasher()
      hasher.combine(type)
      hasher.combine(limit)
      reply.withUnsafeBytes { hasher.combine(bytes: $0) }  // one pass, not byte by byte
      self.hash = hasher.finalize()
      self.type = type
      self.limit = limit
      self.reply = reply
    }

    func hash(into hasher: inout Hasher) { hasher.combine(self.hash) }
    static func == (a: Key, b: Key) -> Bool { a.hash == b.hash && a.limit == b.limit && a.type == b.type && a.reply == b.reply }
  }

  private struct State {
    var entries: [Key: ResponseShaper.Shaped] = [:]
    var order: Deque<Key> = []
    var bytes = 0
    var hits = 0
    var misses = 0
  }

  /// Most bytes kept (replies and their JSON); the oldest entries go first.
  let capacityBytes: Int
  /// Larger replies are rendered every time (one would push out many small ones).
  let largestReply: Int
  private let state = Mutex(State())

  init(capacityBytes: Int = 8 << 20, largestReply: Int = 64 << 10) {
    self.capacityBytes = capacityBytes
    self.largestReply = largestReply
  }

  /// The kept rendering of `key`, counting the hit or miss.
  func value(for key: Key) -> ResponseShaper.Shaped? {
    self.state.withLock { state in
      let found = state.entries[key]
      if found == nil { state.misses += 1 } else { state.hits += 1 }
      return found
    }
  }

  /// Keeps `shaped` for `key` unless the reply is too large; evicts the oldest to fit.
  func store(_ shaped: ResponseShaper.Shaped, for key: Key) {
    guard key.reply.count <= self.largestReply else { return }
    let cost = Self.cost(key, shaped)
    self.state.withLock { state in
      guard state.entries[key] == nil else { return }
      while state.bytes + cost > self.capacityBytes, let oldest = state.order.popFirst() {
        if let gone = state.entries.removeValue(forKey: oldest) { state.bytes -= Self.cost(oldest, gone) }
      }
      state.entries[key] = shaped
      state.order.append(key)
      state.bytes += cost
    }
  }

  /// What the cache holds and how it has done: for `/metrics` and tests.
  var stats: (entries: Int, bytes: Int, hits: Int, misses: Int) {
    self.state.withLock { ($0.entries.count, $0.bytes, $0.hits, $0.misses) }
  }

  private static func cost(_ key: Key, _ shaped: ResponseShaper.Shaped) -> Int {
    // Bytes of the reply and the JSON, plus a rough fixed cost of the entry and its strings.
    key.reply.count + shaped.json.utf8.count + (shaped.id?.utf8.count ?? 0) + (shaped.etag?.utf8.count ?? 0) + 256
  }
}

extension RenderCache {
  /// `gateway_render_cache_hits_total`, `_misses_total`, `_entries` and `_bytes`.
  func export(to metrics: HostMetrics) {
    let registry = metrics.registry
    let hits = registry.makeCounter(name: "gateway_render_cache_hits_total", help: "Read replies whose rendering was kept.")
    let misses = registry.makeCounter(name: "gateway_render_cache_misses_total", help: "Read replies decoded and rendered.")
    let entries = registry.makeGauge(name: "gateway_render_cache_entries", help: "Renderings kept.")
    let bytes = registry.makeGauge(name: "gateway_render_cache_bytes", help: "Their bytes (replies and JSON).")
    let counted = Mutex((hits: 0, misses: 0))
    metrics.onScrape("gateway.render") {
      let now = self.stats
      entries.set(Double(now.entries))
      bytes.set(Double(now.bytes))
      let (newHits, newMisses) = counted.withLock { before in
        defer { before = (now.hits, now.misses) }
        return (now.hits - before.hits, now.misses - before.misses)
      }
      hits.increment(by: Int64(newHits))
      misses.increment(by: Int64(newMisses))
    }
  }
}
