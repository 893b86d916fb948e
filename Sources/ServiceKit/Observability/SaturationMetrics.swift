import FramedTransport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

#if canImport(Glibc)
  import Glibc
#endif

/// Saturation on a host's /metrics, read at each scrape: resident memory, open descriptors
/// against the limit, how late each event loop runs its timers, and each RPC listener's
/// connections against its cap.
final class SaturationMetrics: Sendable {
  struct Listener: Sendable {
    var name: String
    var limiter: ConnectionLimiter
    var handshakeTimeouts: EventCounter?
  }

  private struct ListenerGauges: Sendable {
    var listener: Listener
    var open: Gauge
    var limit: Gauge
    var rejected: Counter
    var shed: Counter
    var acceptErrors: Counter
    var handshakeTimeouts: Counter?
  }

  private let residentMemory: Gauge
  private let openDescriptors: Gauge
  private let maxDescriptors: Gauge
  private let lagGauges: [Gauge]
  private let listeners: [ListenerGauges]
  /// Totals already added to the counters (they are kept by the limiters).
  private let exported = NIOLockedValueBox<[String: Int]>([:])
  let lag: EventLoopLagMonitor

  init(registry: PrometheusCollectorRegistry, loops: [any EventLoop], listeners: [Listener]) {
    self.residentMemory = registry.makeGauge(name: "process_resident_memory_bytes", labels: [], help: "Resident memory of the process.")
    self.openDescriptors = registry.makeGauge(name: "process_open_fds", labels: [], help: "Open file descriptors.")
    self.maxDescriptors = registry.makeGauge(name: "process_max_fds", labels: [], help: "The soft descriptor limit.")
    self.lag = EventLoopLagMonitor(loops: loops)
    self.lagGauges = loops.indices.map {
      registry.makeGauge(
        name: "eventloop_lag_seconds", labels: [("loop", "\($0)")],
        help: "The worst lateness of the event loop's timer since the last scrape.")
    }
    self.listeners = listeners.map { listener in
      let labels = [("listener", listener.name)]
      return ListenerGauges(
        listener: listener,
        open: registry.makeGauge(name: "rpc_server_connections", labels: labels, help: "Open connections."),
        limit: registry.makeGauge(name: "rpc_server_connections_limit", labels: labels, help: "Connections held at once before more are closed."),
        rejected: registry.makeCounter(
          name: "rpc_server_connections_rejected_total", labels: labels + [("reason", "limit")],
          help: "Connections closed as soon as accepted: the limit was reached, or descriptors ran out."),
        shed: registry.makeCounter(
          name: "rpc_server_connections_rejected_total", labels: labels + [("reason", "descriptors")],
          help: "Connections closed as soon as accepted: the limit was reached, or descriptors ran out."),
        acceptErrors: registry.makeCounter(
          name: "rpc_server_accept_errors_total", labels: labels, help: "Failed accepts, e.g. out of descriptors (EMFILE)."),
        handshakeTimeouts: listener.handshakeTimeouts.map { _ in
          registry.makeCounter(
            name: "rpc_server_handshake_timeouts_total", labels: labels, help: "Connections closed for not finishing the preface in time.")
        })
    }
  }

  /// Brings every gauge and counter up to date; call before rendering.
  func refresh() {
    if let rss = Self.residentBytes() { self.residentMemory.set(Double(rss)) }
    if let open = Self.openDescriptorCount() { self.openDescriptors.set(Double(open)) }
    self.maxDescriptors.set(Double(ConnectionLimiter.descriptorLimit))
    for (gauge, lag) in zip(self.lagGauges, self.lag.lags()) { gauge.set(Double(lag.nanoseconds) / 1e9) }
    for l in self.listeners {
      l.open.set(Double(l.listener.limiter.open))
      l.limit.set(Double(l.listener.limiter.limit))
      self.export(l.listener.limiter.rejected, to: l.rejected, key: "\(l.listener.name).rejected")
      self.export(l.listener.limiter.shed, to: l.shed, key: "\(l.listener.name).shed")
      self.export(l.listener.limiter.acceptErrors, to: l.acceptErrors, key: "\(l.listener.name).acceptErrors")
      if let counter = l.handshakeTimeouts, let events = l.listener.handshakeTimeouts {
        self.export(events.count, to: counter, key: "\(l.listener.name).handshakeTimeouts")
      }
    }
  }

  private func export(_ total: Int, to counter: Counter, key: String) {
    let delta = self.exported.withLockedValue { exported -> Int in
      defer { exported[key] = max(total, exported[key] ?? 0) }
      return total - (exported[key] ?? 0)
    }
    if delta > 0 { counter.increment(by: Int64(delta)) }
  }

  /// VmRSS, from /proc/self/statm (resident pages).
  static func residentBytes() -> Int? {
    #if os(Linux)
      guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
      let fields = text.split(separator: " ")
      guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
      return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    #else
      return nil
    #endif
  }

  /// Entries of /proc/self/fd, less the one reading it.
  static func openDescriptorCount() -> Int? {
    #if os(Linux)
      guard let dir = opendir("/proc/self/fd") else { return nil }
      defer { closedir(dir) }
      var count = 0
      while let entry = readdir(dir) {
        let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
        if !isDot { count += 1 }
      }
      return count - 1
    #else
      return nil
    #endif
  }
}

/// How late each event loop runs a timer. A loop that is busy, or blocked by a handler that
/// shouldn't block, runs it late by as long as the work it is stuck behind: every connection
/// on that loop waits as long.
final class EventLoopLagMonitor: Sendable {
  private struct Loop {
    var due: NIODeadline?
    /// The worst lateness since the last `lags()`.
    var worst: TimeAmount = .zero
    var task: Scheduled<Void>?
  }

  let interval: TimeAmount
  private let loops: [any EventLoop]
  private let state: NIOLockedValueBox<(running: Bool, loops: [Loop])>

  init(loops: [any EventLoop], interval: TimeAmount = .milliseconds(500)) {
    self.loops = loops
    self.interval = interval
    self.state = NIOLockedValueBox((false, Array(repeating: Loop(), count: loops.count)))
  }

  func start() {
    let start = self.state.withLockedValue { s -> Bool in
      defer { s.running = true }
      return !s.running
    }
    if start { for index in self.loops.indices { self.schedule(index) } }
  }

  func stop() {
    let tasks = self.state.withLockedValue { s -> [Scheduled<Void>] in
      s.running = false
      defer { for i in s.loops.indices { s.loops[i].task = nil } }
      return s.loops.compactMap(\.task)
    }
    for task in tasks { task.cancel() }
  }

  /// Per loop: the worst lateness since the last call (a scrape sees a stall between two
  /// scrapes), or how overdue the pending timer is if more (a loop stuck right now shows
  /// before its timer finally runs).
  func lags() -> [TimeAmount] {
    let now = NIODeadline.now()
    return self.state.withLockedValue { s in
      defer { for i in s.loops.indices { s.loops[i].worst = .zero } }
      return s.loops.map { loop in
        guard let due = loop.due, now > due else { return loop.worst }
        return max(loop.worst, now - due)
      }
    }
  }

  private func schedule(_ index: Int) {
    let due = NIODeadline.now() + self.interval
    let running = self.state.withLockedValue { s -> Bool in
      s.loops[index].due = due
      return s.running
    }
    guard running else { return }
    let task = self.loops[index].scheduleTask(deadline: due) { [self] in
      let lag = NIODeadline.now() - due
      self.state.withLockedValue {
        $0.loops[index].worst = max($0.loops[index].worst, lag)
        $0.loops[index].due = nil
      }
      self.schedule(index)
    }
    self.state.withLockedValue { s in
      if s.running { s.loops[index].task = task } else { task.cancel() }
    }
  }
}
