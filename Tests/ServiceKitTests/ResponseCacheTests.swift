import ServiceKit
import Synchronization
import XCTest

/// The response cache's bounds (entries, bytes), TTL on an injected clock, LRU order, tag
/// invalidation, fill tickets, flush, and its series on a host's /metrics.
final class ResponseCacheTests: XCTestCase {
  /// A clock the test moves by hand.
  final class ManualClock: Sendable {
    private let start = ContinuousClock.now
    private let offset = Mutex(Duration.zero)
    func advance(_ by: Duration) { self.offset.withLock { $0 += by } }
    var now: ContinuousClock.Instant { self.start + self.offset.withLock { $0 } }
  }

  private func cache(entries: Int = 100, bytes: Int = 10_000, ttl: Duration = .seconds(30), clock: ManualClock = ManualClock())
    -> ResponseCache<String, String>
  {
    ResponseCache(name: "test", limits: .init(maxEntries: entries, maxBytes: bytes, ttl: ttl), clock: { clock.now })
  }

  func testHitMissAndLeastRecentlyUsedEvictionByEntries() {
    let cache = self.cache(entries: 3)
    for key in ["a", "b", "c"] { XCTAssertTrue(cache.insert(key.uppercased(), for: key, bytes: 1, tags: [], ticket: cache.ticket())) }
    XCTAssertEqual(cache.value(for: "a"), "A")  // a is now the most recent; b the least
    cache.insert("D", for: "d", bytes: 1, tags: [], ticket: cache.ticket())
    XCTAssertNil(cache.value(for: "b"))
    XCTAssertEqual(cache.value(for: "a"), "A")
    XCTAssertEqual(cache.value(for: "c"), "C")
    XCTAssertEqual(cache.value(for: "d"), "D")
    let stats = cache.statistics
    XCTAssertEqual(stats.hits, 4)
    XCTAssertEqual(stats.misses, 1)
    XCTAssertEqual(stats.evictions, 1)
    XCTAssertEqual(stats.entries, 3)
  }

  func testBytesBoundEvictsUntilItHoldsAndRefusesWhatNeverFits() {
    let cache = self.cache(entries: 100, bytes: 100)
    for key in ["a", "b", "c", "d"] { cache.insert(key, for: key, bytes: 30, tags: [], ticket: cache.ticket()) }
    XCTAssertEqual(cache.statistics.bytes, 90, "a went to make room for d")
    XCTAssertNil(cache.value(for: "a"))
    cache.insert("big", for: "e", bytes: 70, tags: [], ticket: cache.ticket())
    XCTAssertEqual(cache.statistics.bytes, 100)
    XCTAssertEqual(cache.statistics.entries, 2, "b and c went; d and e stay")
    XCTAssertEqual(cache.value(for: "d"), "d")
    XCTAssertFalse(cache.insert("huge", for: "f", bytes: 101, tags: [], ticket: cache.ticket()))
    XCTAssertEqual(cache.statistics.refused, 1)
    // Replacing a key replaces its bytes too.
    cache.insert("d2", for: "d", bytes: 10, tags: [], ticket: cache.ticket())
    XCTAssertEqual(cache.statistics.bytes, 80)
  }

  func testEntriesExpireAfterTheTTL() {
    let clock = ManualClock()
    let cache = self.cache(ttl: .seconds(30), clock: clock)
    cache.insert("A", for: "a", bytes: 1, tags: [], ticket: cache.ticket())
    clock.advance(.seconds(29))
    XCTAssertEqual(cache.value(for: "a"), "A")
    clock.advance(.seconds(1))
    XCTAssertNil(cache.value(for: "a"))
    XCTAssertEqual(cache.statistics.expirations, 1)
    XCTAssertEqual(cache.statistics.entries, 0)
  }

  func testTagInvalidationDropsExactlyTheTaggedEntries() {
    let cache = self.cache()
    cache.insert("quiz 1", for: "q1", bytes: 1, tags: ["quiz:1", "author:x"], ticket: cache.ticket())
    cache.insert("page with 1 and 2", for: "p1", bytes: 1, tags: ["quiz:1", "quiz:2", "lists"], ticket: cache.ticket())
    cache.insert("page with 3", for: "p2", bytes: 1, tags: ["quiz:3", "lists"], ticket: cache.ticket())
    cache.insert("quiz 3", for: "q3", bytes: 1, tags: ["quiz:3"], ticket: cache.ticket())
    XCTAssertEqual(cache.invalidate(tag: "quiz:1"), 2)
    XCTAssertNil(cache.value(for: "q1"))
    XCTAssertNil(cache.value(for: "p1"))
    XCTAssertNotNil(cache.value(for: "p2"))
    XCTAssertNotNil(cache.value(for: "q3"))
    // The list generation: every page, no single quiz.
    XCTAssertEqual(cache.invalidate(tag: "lists"), 1)
    XCTAssertNil(cache.value(for: "p2"))
    XCTAssertNotNil(cache.value(for: "q3"))
    XCTAssertEqual(cache.invalidate(tag: "nothing"), 0)
    XCTAssertEqual(cache.statistics.invalidations, 3)
  }

  /// A value read before a write must not be cached after that write's invalidation.
  func testAFillThatStartedBeforeAnInvalidationIsRefused() {
    let cache = self.cache()
    let before = cache.ticket()
    cache.invalidate(tag: "quiz:1")
    XCTAssertFalse(cache.insert("stale", for: "q1", bytes: 1, tags: ["quiz:1"], ticket: before))
    XCTAssertTrue(cache.insert("other", for: "q2", bytes: 1, tags: ["quiz:2"], ticket: before), "other tags are unaffected")
    XCTAssertTrue(cache.insert("fresh", for: "q1", bytes: 1, tags: ["quiz:1"], ticket: cache.ticket()))
    let beforeFlush = cache.ticket()
    cache.flushAll()
    XCTAssertEqual(cache.statistics.entries, 0)
    XCTAssertFalse(cache.insert("stale", for: "q2", bytes: 1, tags: ["quiz:2"], ticket: beforeFlush))
    XCTAssertTrue(cache.insert("fresh", for: "q2", bytes: 1, tags: ["quiz:2"], ticket: cache.ticket()))
  }

  func testFlushAllEmptiesEverything() {
    let cache = self.cache()
    for i in 0..<50 { cache.insert("\(i)", for: "\(i)", bytes: 10, tags: ["t\(i % 3)"], ticket: cache.ticket()) }
    cache.flushAll()
    XCTAssertEqual(cache.statistics.entries, 0)
    XCTAssertEqual(cache.statistics.bytes, 0)
    XCTAssertEqual(cache.invalidate(tag: "t1"), 0)
    cache.insert("again", for: "x", bytes: 10, tags: [], ticket: cache.ticket())
    XCTAssertEqual(cache.value(for: "x"), "again")
  }

  func testStatisticsReachAHostsMetrics() {
    let metrics = HostMetrics()
    let cache = self.cache(entries: 1)
    metrics.observe(cache: cache)
    cache.insert("A", for: "a", bytes: 7, tags: [], ticket: cache.ticket())
    _ = cache.value(for: "a")
    _ = cache.value(for: "zz")
    cache.insert("B", for: "b", bytes: 5, tags: ["t"], ticket: cache.ticket())
    cache.invalidate(tag: "t")
    let text = metrics.exposition()
    let expected: [(String, Double)] = [
      (#"cache_hits_total{cache="test"}"#, 1), (#"cache_misses_total{cache="test"}"#, 1), (#"cache_evictions_total{cache="test",reason="size"}"#, 1),
      (#"cache_evictions_total{cache="test",reason="invalidated"}"#, 1), (#"cache_insertions_total{cache="test"}"#, 2),
      (#"cache_entries{cache="test"}"#, 0), (#"cache_bytes{cache="test"}"#, 0),
    ]
    for (series, value) in expected { XCTAssertEqual(Self.value(series, in: text), value, "\(series) in\n\(text)") }
    _ = cache.value(for: "a")
    XCTAssertEqual(Self.value(#"cache_misses_total{cache="test"}"#, in: metrics.exposition()), 2, "counters grow by what grew since the last scrape")
  }

  static func value(_ series: String, in text: String) -> Double? {
    text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
  }
}
