import Prometheus
import Synchronization

extension HostMetrics {
  /// A response cache on /metrics, by `cache` label: `cache_hits_total`,
  /// `cache_misses_total`, `cache_evictions_total{reason="size"|"expired"|"invalidated"}`,
  /// `cache_insertions_total`, `cache_refused_total`, `cache_entries`, `cache_bytes`.
  public func observe(cache: any ResponseCacheObservable) {
    let exporter = CacheExporter(cache: cache, registry: self.registry)
    self.onScrape("cache.\(cache.name)") { exporter.sample() }
  }
}

/// Turns a cache's statistics into series; counters grow by what grew since the last scrape.
private final class CacheExporter: Sendable {
  let cache: any ResponseCacheObservable
  let hits: Counter
  let misses: Counter
  let evictedSize: Counter
  let evictedExpired: Counter
  let evictedInvalidated: Counter
  let insertions: Counter
  let refused: Counter
  let entries: Gauge
  let bytes: Gauge
  private let last = Mutex(ResponseCacheStatistics())

  init(cache: any ResponseCacheObservable, registry: PrometheusCollectorRegistry) {
    self.cache = cache
    let labels = [("cache", cache.name)]
    self.hits = registry.makeCounter(name: "cache_hits_total", labels: labels, help: "Lookups answered from the cache.")
    self.misses = registry.makeCounter(name: "cache_misses_total", labels: labels, help: "Lookups the cache could not answer.")
    let evictionHelp = "Entries dropped: to stay within the bounds (size), past their TTL (expired), or by invalidation (invalidated)."
    self.evictedSize = registry.makeCounter(name: "cache_evictions_total", labels: labels + [("reason", "size")], help: evictionHelp)
    self.evictedExpired = registry.makeCounter(name: "cache_evictions_total", labels: labels + [("reason", "expired")], help: evictionHelp)
    self.evictedInvalidated = registry.makeCounter(
      name: "cache_evictions_total", labels: labels + [("reason", "invalidated")], help: evictionHelp)
    self.insertions = registry.makeCounter(name: "cache_insertions_total", labels: labels, help: "Entries stored.")
    self.refused = registry.makeCounter(
      name: "cache_refused_total", labels: labels, help: "Entries not stored: filled before an invalidation of what they show, or too large.")
    self.entries = registry.makeGauge(name: "cache_entries", labels: labels, help: "Entries held.")
    self.bytes = registry.makeGauge(name: "cache_bytes", labels: labels, help: "Bytes held (as the cache's user costs its entries).")
  }

  func sample() {
    let (now, before) = self.last.withLock { last in
      let now = self.cache.statistics
      defer { last = now }
      return (now, last)
    }
    self.hits.increment(by: Int64(max(0, now.hits - before.hits)))
    self.misses.increment(by: Int64(max(0, now.misses - before.misses)))
    self.evictedSize.increment(by: Int64(max(0, now.evictions - before.evictions)))
    self.evictedExpired.increment(by: Int64(max(0, now.expirations - before.expirations)))
    self.evictedInvalidated.increment(by: Int64(max(0, now.invalidations - before.invalidations)))
    self.insertions.increment(by: Int64(max(0, now.insertions - before.insertions)))
    self.refused.increment(by: Int64(max(0, now.refused - before.refused)))
    self.entries.set(Double(now.entries))
    self.bytes.set(Double(now.bytes))
  }
}
