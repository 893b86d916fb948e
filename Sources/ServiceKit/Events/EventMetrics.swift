import Prometheus
import Synchronization

extension HostMetrics {
  /// A consumer on /metrics, by `consumer` ("auth.users/quiz.author-names"):
  /// `event_consumer_lag_offsets`, `event_consumer_lag_seconds`,
  /// `event_consumer_events_total{outcome="applied"|"superseded"|"parked"|"replayed"}`,
  /// `event_consumer_resyncs_total`, `event_consumer_lease_held`.
  public func observe(consumer: EventConsumer) {
    let labels = [("consumer", consumer.name)]
    let registry = self.registry
    let lagOffsets = registry.makeGauge(name: "event_consumer_lag_offsets", labels: labels, help: "Offsets between the producer's head and the last applied.")
    let lagSeconds = registry.makeGauge(name: "event_consumer_lag_seconds", labels: labels, help: "Age of the next event to apply (0 when caught up).")
    let held = registry.makeGauge(name: "event_consumer_lease_held", labels: labels, help: "1 while this replica consumes the group.")
    let help = "Events handled, by outcome."
    let outcomes = ["applied", "superseded", "parked", "replayed"].map {
      registry.makeCounter(name: "event_consumer_events_total", labels: labels + [("outcome", $0)], help: help)
    }
    let resyncs = registry.makeCounter(name: "event_consumer_resyncs_total", labels: labels, help: "Resyncs after OUT_OF_RANGE.")
    let last = Mutex(EventConsumer.Statistics())
    self.onScrape("event_consumer.\(consumer.name)") {
      let now = consumer.statistics
      let before = last.withLock { last in
        defer { last = now }
        return last
      }
      lagOffsets.set(to: Double(now.lagOffsets))
      lagSeconds.set(to: now.lagSeconds)
      held.set(to: now.holdsLease ? 1.0 : 0.0)
      let nowCounts: [Int] = [now.applied, now.superseded, now.parked, now.replayed]
      let beforeCounts: [Int] = [before.applied, before.superseded, before.parked, before.replayed]
      for index in outcomes.indices where nowCounts[index] > beforeCounts[index] {
        outcomes[index].increment(by: Int64(nowCounts[index] - beforeCounts[index]))
      }
      if now.resyncs > before.resyncs { resyncs.increment(by: Int64(now.resyncs - before.resyncs)) }
    }
  }

  /// A feed on /metrics: `event_feed_subscriptions` (open now), `event_feed_events_sent_total`.
  public func observe(feed: EventFeedService) {
    let active = self.registry.makeGauge(name: "event_feed_subscriptions", labels: [], help: "Open subscriptions to this service's feeds.")
    let sent = self.registry.makeCounter(name: "event_feed_events_sent_total", labels: [], help: "Events written to subscribers.")
    let last = Mutex(0)
    self.onScrape("event_feed") {
      let now = feed.statistics
      active.set(to: Double(now.active))
      let delta = last.withLock { last in
        defer { last = now.eventsSent }
        return now.eventsSent - last
      }
      if delta > 0 { sent.increment(by: Int64(delta)) }
    }
  }
}
