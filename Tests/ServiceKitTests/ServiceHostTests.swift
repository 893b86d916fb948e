import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOConcurrencyHelpers
import QuizwireProtos
import ServiceLifecycle
import XCTest

@testable import ServiceKit

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// bench.v1.EchoService with knobs: it can fail with UNAVAILABLE, and its server stream
/// paces itself so a drain can catch it mid-flight.
final class ProbeEcho: Bench_V1_EchoService.SimpleServiceProtocol, Sendable {
  let failing = NIOLockedValueBox(false)
  let calls = NIOLockedValueBox(0)
  let streamDelay: Duration

  init(streamDelay: Duration = .milliseconds(20)) { self.streamDelay = streamDelay }

  func unary(request: Bench_V1_EchoRequest, context: ServerContext) async throws -> Bench_V1_EchoResponse {
    self.calls.withLockedValue { $0 += 1 }
    if self.failing.withLockedValue({ $0 }) { throw RPCError(code: .unavailable, message: "probe is failing") }
    return .with { $0.payload = request.payload }
  }

  func serverStream(request: Bench_V1_EchoRequest, response: RPCWriter<Bench_V1_EchoResponse>, context: ServerContext) async throws {
    for i in 0..<request.count {
      try await response.write(.with { $0.index = i })
      try await Task.sleep(for: self.streamDelay)
    }
  }

  func clientStream(request: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>, context: ServerContext) async throws -> Bench_V1_EchoResponse {
    var n: UInt32 = 0
    for try await _ in request { n += 1 }
    return .with { $0.index = n }
  }

  func bidi(request: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>, response: RPCWriter<Bench_V1_EchoResponse>, context: ServerContext) async throws {
    for try await m in request { try await response.write(.with { $0.payload = m.payload }) }
  }
}

final class ServiceHostTests: XCTestCase {
  func makeHost(_ service: ProbeEcho, log: CapturedLog, dependencies: [DependencyCheck] = []) throws -> ServiceHost {
    var config = ServiceHost.Config()
    config.readinessInterval = .milliseconds(50)
    config.grace = .seconds(5)
    config.rateLimit = nil
    return try ServiceHost(name: "bench.v1.EchoService", services: [service], dependencies: dependencies, config: config, logSink: log.sink)
  }

  static func get(_ address: String, _ path: String) async throws -> (Int, String) {
    let (data, response) = try await URLSession.shared.data(from: URL(string: "http://\(address)\(path)")!)
    return ((response as! HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
  }

  /// Polls until `condition` holds (or fails the test after `timeout`).
  static func eventually(_ what: String, timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
      if try await condition() { return }
      try await Task.sleep(for: .milliseconds(20))
    }
    XCTFail("timed out waiting for: \(what)")
  }

  func withClient<T: Sendable>(_ target: String, _ body: (GRPCClient<FramedClientTransport>) async throws -> T) async throws -> T {
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(target)!]))
    return try await withGRPCClient(transport: transport) { try await body($0) }
  }

  func testMetricsLogsAndReadinessFollowDependencies() async throws {
    let log = CapturedLog()
    let databaseUp = NIOLockedValueBox(true)
    let probe = ProbeEcho()
    let host = try self.makeHost(
      probe, log: log,
      dependencies: [
        DependencyCheck(name: "database") {
          if !databaseUp.withLockedValue({ $0 }) { throw RPCError(code: .unavailable, message: "connection refused") }
        }
      ])
    let running = Task { try await host.run() }
    defer { running.cancel() }
    let addresses = try await host.addresses()
    let admin = try XCTUnwrap(addresses.admin)
    try await Self.eventually("ready") { try await Self.get(admin, "/readyz").0 == 200 }
    let _v1 = try await Self.get(admin, "/livez").0
    XCTAssertEqual(_v1, 200)

    try await self.withClient(addresses.framed) { client in
      let echo = Bench_V1_EchoService.Client(wrapping: client)
      let reply = try await echo.unary(.with { $0.payload = Data("hi".utf8) }, metadata: ["x-request-id": "e2e-req-1"])
      XCTAssertEqual(reply.payload, Data("hi".utf8))
      let health = Grpc_Health_V1_Health.Client(wrapping: client)
      let _v2 = try await health.check(.with { $0.service = "bench.v1.EchoService" }).status
      XCTAssertEqual(_v2, .serving)

      let (status, metrics) = try await Self.get(admin, "/metrics")
      XCTAssertEqual(status, 200)
      XCTAssertTrue(metrics.contains(#"rpc_server_requests_total{service="bench.v1.EchoService",method="Unary",code="OK"} 1"#), metrics)
      let lines = log.entries().filter { $0["message"] as? String == "rpc" && $0["request_id"] as? String == "e2e-req-1" }
      XCTAssertEqual(lines.count, 1)
      XCTAssertEqual(lines.first?["method"] as? String, "bench.v1.EchoService/Unary")
      XCTAssertEqual(lines.first?["status"] as? String, "OK")

      // The database goes away: not ready, health NOT_SERVING; it comes back: ready again.
      databaseUp.withLockedValue { $0 = false }
      try await Self.eventually("not ready") { try await Self.get(admin, "/readyz").0 == 503 }
      let _v3 = try await Self.get(admin, "/readyz").1.contains("database: ")
      XCTAssertTrue(_v3)
      let _v4 = try await health.check(.with { $0.service = "" }).status
      XCTAssertEqual(_v4, .notServing)
      databaseUp.withLockedValue { $0 = true }
      try await Self.eventually("ready again") { try await Self.get(admin, "/readyz").0 == 200 }
      let _v5 = try await health.check(.with { $0.service = "bench.v1.EchoService" }).status
      XCTAssertEqual(_v5, .serving)
    }
    host.beginGracefulShutdown()
    try await running.value
  }

  func testAnAdminPortInUseFailsTheHost() async throws {
    let log = CapturedLog()
    let first = try self.makeHost(ProbeEcho(), log: log)
    let running = Task { try await first.run() }
    defer { running.cancel() }
    let taken = try await first.addresses().admin!.split(separator: ":").last.flatMap { Int($0) }!
    var config = ServiceHost.Config()
    config.adminPort = taken
    let second = try ServiceHost(name: "bench.v1.EchoService", services: [ProbeEcho()], config: config, logSink: log.sink)
    do {
      try await second.run()
      XCTFail("a host whose admin port can't be bound must not run")
    } catch {
      XCTAssertTrue("\(error)".lowercased().contains("in use"), "\(error)")
    }
    first.beginGracefulShutdown()
    try await running.value
  }

  func testGracefulShutdownFinishesAnInFlightStream() async throws {
    let log = CapturedLog()
    let host = try self.makeHost(ProbeEcho(streamDelay: .milliseconds(25)), log: log)
    let group = ServiceGroup(configuration: .init(services: [host], logger: host.logger))
    let running = Task { try await group.run() }
    let addresses = try await host.addresses()
    let admin = try XCTUnwrap(addresses.admin)
    try await Self.eventually("ready") { try await Self.get(admin, "/readyz").0 == 200 }

    let received = try await self.withClient(addresses.framed) { client in
      let echo = Bench_V1_EchoService.Client(wrapping: client)
      return try await echo.serverStream(.with { $0.count = 20 }) { response in
        var count = 0
        for try await _ in response.messages {
          count += 1
          if count == 1 {
            // What SIGTERM does under the ServiceGroup: drain begins mid-stream.
            await group.triggerGracefulShutdown()
            try await Self.eventually("draining") {
              let (status, body) = try await Self.get(admin, "/readyz")
              return status == 503 && body.contains("draining")
            }
          }
        }
        return count
      }
    }
    XCTAssertEqual(received, 20, "the in-flight stream completes during the drain")
    try await running.value
    XCTAssertTrue(log.entries().contains { $0["message"] as? String == "drained" })
  }

  func testDefaultDeadlineEndsLongCallsOnBothTransports() async throws {
    let log = CapturedLog()
    var config = ServiceHost.Config()
    config.rateLimit = nil
    config.defaultDeadline = .milliseconds(150)
    let host = try ServiceHost(name: "bench.v1.EchoService", services: [ProbeEcho(streamDelay: .milliseconds(30))], config: config, logSink: log.sink)
    let running = Task { try await host.run() }
    defer { running.cancel() }
    let addresses = try await host.addresses()
    // Framed: the transport's loop timer ends the call (no deadline sent by the client).
    let framed = await Self.streamOutcome(try FramedClientTransport(config: .init(targets: [FramedTarget(addresses.framed)!])))
    XCTAssertEqual(framed.code, .deadlineExceeded)
    XCTAssertLessThan(framed.received, 20)
    // HTTP/2: the interceptor's own timer does.
    let parts = addresses.grpc.split(separator: ":")
    let h2 = await Self.streamOutcome(
      try HTTP2ClientTransport.Posix(
        target: .ipv4(address: String(parts[0]), port: Int(parts[1])!), transportSecurity: .plaintext))
    XCTAssertEqual(h2.code, .deadlineExceeded)
    XCTAssertLessThan(h2.received, 20)
    host.beginGracefulShutdown()
    try await running.value
  }

  static func streamOutcome<T: ClientTransport>(_ transport: T) async -> (code: RPCError.Code?, received: Int) {
    let counter = NIOLockedValueBox(0)
    do {
      try await withGRPCClient(transport: transport) { client in
        try await Bench_V1_EchoService.Client(wrapping: client).serverStream(.with { $0.count = 20 }) { response in
          for try await _ in response.messages { counter.withLockedValue { $0 += 1 } }
        }
      }
      return (nil, counter.withLockedValue { $0 })
    } catch let error as RPCError {
      return (error.code, counter.withLockedValue { $0 })
    } catch {
      return (.unknown, counter.withLockedValue { $0 })
    }
  }

  func testFailingReplicaIsSkippedAndRecoversAfterHalfOpen() async throws {
    let log = CapturedLog()
    let a = ProbeEcho(), b = ProbeEcho()
    let hostA = try self.makeHost(a, log: log), hostB = try self.makeHost(b, log: log)
    let runA = Task { try await hostA.run() }, runB = Task { try await hostB.run() }
    defer { runA.cancel(); runB.cancel() }
    let unary = Bench_V1_EchoService.Method.Unary.descriptor
    var config = ServiceClientConfig(replicas: [try await hostA.addresses().framed, try await hostB.addresses().framed])
    config.idempotentMethods = [unary]
    config.breaker.windowSize = 4
    config.breaker.minimumCalls = 4
    config.breaker.failureRatio = 0.5
    config.breaker.openDuration = .milliseconds(300)
    let downstream = try ServiceClient(config, metrics: HostMetrics())
    let clientRun = Task { try await downstream.run() }
    defer { clientRun.cancel() }
    let echo = Bench_V1_EchoService.Client(wrapping: downstream.client)
    XCTAssertNotNil(downstream.transport.config(forMethod: unary)?.executionPolicy, "generated descriptors find their retry policy")

    // Both replicas connected and in use before A starts failing.
    try await Self.eventually("both replicas used") {
      _ = try await echo.unary(.with { $0.payload = Data([0]) })
      return a.calls.withLockedValue { $0 } > 0 && b.calls.withLockedValue { $0 } > 0
    }
    a.calls.withLockedValue { $0 = 0 }
    b.calls.withLockedValue { $0 = 0 }
    a.failing.withLockedValue { $0 = true }
    for _ in 0..<40 {
      // Every call succeeds: a failure on A is retried on B, and once A's breaker opens A gets none.
      _ = try await echo.unary(.with { $0.payload = Data([1]) })
    }
    let callsOnA = a.calls.withLockedValue { $0 }
    XCTAssertLessThanOrEqual(callsOnA, 6, "A stops getting calls once its breaker opens")
    XCTAssertGreaterThanOrEqual(b.calls.withLockedValue { $0 }, 40)
    guard case .open = downstream.breakers.state(of: 0) else { return XCTFail("breaker for A should be open") }

    // A recovers; after the open period a probe goes through and A is used again.
    a.failing.withLockedValue { $0 = false }
    try await Task.sleep(for: .milliseconds(350))
    for _ in 0..<20 { _ = try await echo.unary(.with { $0.payload = Data([2]) }) }
    XCTAssertGreaterThan(a.calls.withLockedValue { $0 }, callsOnA + 5)
    XCTAssertEqual(downstream.breakers.state(of: 0), .closed)

    downstream.shutDown()
    hostA.beginGracefulShutdown()
    hostB.beginGracefulShutdown()
    try await runA.value
    try await runB.value
  }
}
