import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// The admin HTTP listener: `/metrics` (Prometheus text), `/livez`, `/readyz`.
/// Kept separate from the RPC ports so probes and scrapes never queue behind traffic.
struct AdminServer: Sendable {
  let host: String
  let port: Int
  let metrics: HostMetrics
  let saturation: SaturationMetrics?
  let readiness: Readiness
  let logger: Logger

  /// How long a graceful stop may take (an in-flight scrape) before the server is cancelled.
  static let stopTimeout = Duration.seconds(2)

  /// Serves until `stop` finishes, reporting the bound port once listening. The stop is
  /// graceful: cancelling a Hummingbird server instead logs "Waiting on child channel:
  /// CancellationError()" at error level on every clean shutdown.
  func run(until stop: AsyncStream<Void>, onListening: @escaping @Sendable (Int) -> Void) async throws {
    let router = Router()
    let metrics = self.metrics
    let saturation = self.saturation
    let readiness = self.readiness
    router.get("/metrics") { _, _ -> Response in
      saturation?.refresh()
      return Response(
        status: .ok,
        headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
    }
    router.get("/livez") { _, _ -> Response in
      Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
    }
    router.get("/readyz") { _, _ -> Response in
      let snapshot = readiness.snapshot
      var lines: [String] = []
      if snapshot.draining { lines.append("draining") }
      if !snapshot.checked { lines.append("starting") }
      for (name, reason) in snapshot.failing.sorted(by: { $0.key < $1.key }) { lines.append("\(name): \(reason)") }
      let body = snapshot.isReady ? "ok\n" : lines.joined(separator: "\n") + "\n"
      return Response(
        status: snapshot.isReady ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
        body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    let app = Application(
      router: router,
      configuration: .init(address: .hostname(self.host, port: self.port), serverName: nil),
      onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
      logger: self.logger)
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: self.logger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      tasks.addTask { try await group.run() }
      tasks.addTask {
        for await _ in stop {}
        await group.triggerGracefulShutdown()
        try await Task.sleep(for: Self.stopTimeout)
        throw CancellationError()  // not stopped in time: cancel it
      }
      try await tasks.next()
      tasks.cancelAll()
    }
  }
}
