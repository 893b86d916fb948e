import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The admin HTTP listener: `/metrics` (Prometheus text), `/livez`, `/readyz`.
/// Kept separate from the RPC ports so probes and scrapes never queue behind traffic.
struct AdminServer: Sendable {
  let host: String
  let port: Int
  let metrics: HostMetrics
  let readiness: Readiness
  let logger: Logger

  /// Serves until cancelled, reporting the bound port once listening.
  func run(onListening: @escaping @Sendable (Int) -> Void) async throws {
    let router = Router()
    let metrics = self.metrics
    let readiness = self.readiness
    router.get("/metrics") { _, _ -> Response in
      Response(
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
    try await app.run()
  }
}
