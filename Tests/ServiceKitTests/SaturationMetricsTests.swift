import Foundation
import FramedTransport
import GRPCCore
import NIOCore
import NIOPosix
import QuizwireProtos
import XCTest

@testable import ServiceKit

/// Saturation on /metrics (process memory, descriptors, event-loop lag, connections), the
/// listener settings, and a clean shutdown that logs no error.
final class SaturationMetricsTests: XCTestCase {
  func testMetricsShowProcessAndListenerSaturation() async throws {
    let log = CapturedLog()
    var config = ServiceHost.Config()
    config.rateLimit = nil
    config.maxConnections = 50
    let host = try ServiceHost(name: "bench.v1.EchoService", services: [ProbeEcho()], config: config, logSink: log.sink)
    let running = Task { try await host.run() }
    defer { running.cancel() }
    let addresses = try await host.addresses()
    let admin = try XCTUnwrap(addresses.admin)
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(addresses.framed)!]))
    try await withGRPCClient(transport: transport) { client in
      _ = try await Bench_V1_EchoService.Client(wrapping: client).unary(.with { $0.payload = Data("hi".utf8) })
      // The lag timers tick every 500 ms.
      try await Task.sleep(for: .milliseconds(600))
      let (status, text) = try await ServiceHostTests.get(admin, "/metrics")
      XCTAssertEqual(status, 200)
      let metrics = Exposition(text)
      let rss = try XCTUnwrap(metrics["process_resident_memory_bytes"], text)
      XCTAssertGreaterThan(rss, 1e6)
      XCTAssertLessThan(rss, 1e11)
      let maxFDs = try XCTUnwrap(metrics["process_max_fds"])
      XCTAssertEqual(maxFDs, Double(ConnectionLimiter.descriptorLimit))
      XCTAssertEqual(Int(maxFDs), DescriptorLimit.change.soft, "the host raised the soft limit at start")
      let openFDs = try XCTUnwrap(metrics["process_open_fds"])
      XCTAssertGreaterThan(openFDs, 3)
      XCTAssertLessThan(openFDs, maxFDs)
      let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator()).count
      for loop in 0..<loops {
        let lag = try XCTUnwrap(metrics[#"eventloop_lag_seconds{loop="\#(loop)"}"#], "loop \(loop)")
        XCTAssertGreaterThanOrEqual(lag, 0)
        XCTAssertLessThan(lag, 0.5)
      }
      XCTAssertEqual(metrics[#"rpc_server_connections{listener="framed"}"#], 1)
      XCTAssertEqual(metrics[#"rpc_server_connections{listener="grpc"}"#], 0)
      XCTAssertEqual(metrics[#"rpc_server_connections_limit{listener="framed"}"#], 50)
      XCTAssertEqual(metrics[#"rpc_server_connections_limit{listener="grpc"}"#], 50)
      XCTAssertEqual(metrics[#"rpc_server_connections_rejected_total{listener="grpc",reason="limit"}"#], 0)
      XCTAssertEqual(metrics[#"rpc_server_handshake_timeouts_total{listener="grpc"}"#], 0)
    }
    host.beginGracefulShutdown()
    try await running.value
  }

  func testLagShowsABlockedLoop() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let monitor = EventLoopLagMonitor(loops: [group.next()], interval: .milliseconds(20))
    monitor.start()
    try await Task.sleep(for: .milliseconds(100))
    XCTAssertLessThan(monitor.lags()[0], .milliseconds(100), "an idle loop runs its timer on time")
    // A handler that blocks its loop for 300 ms: the lag shows it while it blocks …
    let blocked = group.next().submit { usleep(300_000) }
    try await Task.sleep(for: .milliseconds(200))
    XCTAssertGreaterThan(monitor.lags()[0], .milliseconds(100))
    try await blocked.get()
    // … and once the late timer has run.
    try await Task.sleep(for: .milliseconds(30))
    XCTAssertGreaterThan(monitor.lags()[0], .milliseconds(200))
    monitor.stop()
    try await group.shutdownGracefully()
  }

  func testListenerSettingsFromConfiguration() throws {
    let layers = try ConfigLayers(
      environment: [:], flags: ["max-connections": "64", "grpc-max-idle": "1.5", "grpc-max-age": "0"])
    let config = try ServiceHost.Config(layers: layers, defaults: ServiceHost.Config())
    XCTAssertEqual(config.maxConnections, 64)
    XCTAssertEqual(config.grpc.maxIdle, .milliseconds(1500))
    XCTAssertNil(config.grpc.maxAge)
    XCTAssertNil(try ServiceHost.Config(layers: ConfigLayers(environment: [:]), defaults: ServiceHost.Config()).maxConnections)
    XCTAssertThrowsError(
      try ServiceHost.Config(layers: ConfigLayers(environment: [:], flags: ["max-connections": "0"]), defaults: ServiceHost.Config())
    ) { error in
      XCTAssertTrue("\(error)".contains("max-connections"), "\(error)")
    }
    XCTAssertTrue(ServiceHost.Config.keys.contains { $0.name == "max-connections" })
  }

  /// A drain logs nothing at error level (Hummingbird used to log "Waiting on child channel:
  /// CancellationError()" when the admin server was cancelled).
  func testCleanShutdownLogsNoError() async throws {
    let log = CapturedLog()
    let host = try ServiceHost(name: "bench.v1.EchoService", services: [ProbeEcho()], config: ServiceHost.Config(), logSink: log.sink)
    let running = Task { try await host.run() }
    defer { running.cancel() }
    let addresses = try await host.addresses()
    let admin = try XCTUnwrap(addresses.admin)
    _ = try await ServiceHostTests.get(admin, "/livez")  // leaves a keep-alive connection open
    host.beginGracefulShutdown()
    try await running.value
    let errors = log.entries().filter { ["error", "critical"].contains($0["level"] as? String) }
    XCTAssertEqual(errors.count, 0, "\(errors)")
    XCTAssertTrue(log.entries().contains { $0["message"] as? String == "drained" })
  }
}

/// Prometheus text by sample name (with labels).
struct Exposition {
  private var samples: [String: Double] = [:]

  init(_ text: String) {
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
      guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
      self.samples[String(line[..<space])] = value
    }
  }

  subscript(name: String) -> Double? { self.samples[name] }
}
