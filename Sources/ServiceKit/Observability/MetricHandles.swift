import CoreMetrics
import Metrics
import Synchronization

/// Counters, timers and meters made once per label set and then reused. swift-metrics'
/// `Counter(label:dimensions:factory:)` asks the factory every time, and the Prometheus
/// factory answers under its registry's lock after building the series' label strings — per
/// call, on every call path, several percent of a service's CPU. Callers keep the label sets
/// bounded (methods, route templates, status codes), as Prometheus needs anyway.
public final class MetricHandles: Sendable {
  private struct Key: Hashable {
    var label: String
    var values: [String]

    /// One array for the label set (`flatMap` into pairs made an array per label).
    init(_ label: String, _ dimensions: [(String, String)]) {
      self.label = label
      self.values = []
      self.values.reserveCapacity(dimensions.count * 2)
      for (name, value) in dimensions {
        self.values.append(name)
        self.values.append(value)
      }
    }
  }

  private let factory: any MetricsFactory
  private let counters = Mutex<[Key: CoreMetrics.Counter]>([:])
  private let timers = Mutex<[Key: Metrics.Timer]>([:])
  private let meters = Mutex<[Key: CoreMetrics.Meter]>([:])

  public init(factory: any MetricsFactory) { self.factory = factory }

  public func counter(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.Counter {
    Self.made(in: self.counters, Key(label, dimensions)) {
      CoreMetrics.Counter(label: label, dimensions: dimensions, factory: self.factory)
    }
  }

  public func timer(_ label: String, _ dimensions: [(String, String)]) -> Metrics.Timer {
    Self.made(in: self.timers, Key(label, dimensions)) {
      Metrics.Timer(label: label, dimensions: dimensions, factory: self.factory)
    }
  }

  public func meter(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.Meter {
    Self.made(in: self.meters, Key(label, dimensions)) {
      CoreMetrics.Meter(label: label, dimensions: dimensions, factory: self.factory)
    }
  }

  private static func made<Handle: Sendable>(in table: borrowing Mutex<[Key: Handle]>, _ key: Key, _ make: () -> Handle) -> Handle {
    if let made = table.withLock({ $0[key] }) { return made }
    // Made outside the lock (the factory takes its own); the first one stored wins.
    let handle = make()
    return table.withLock { handles in
      if let made = handles[key] { return made }
      handles[key] = handle
      return handle
    }
  }
}
