import BenchService
import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import Synchronization
import XCTest

/// Drain, peer death, balancing over replicas and reconnecting.
final class ReplicaTests: XCTestCase {
  func testDrainLetsInFlightCallsFinishAndRefusesNewOnes() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let inFlight = Task {
        try await echo.serverStream(echoRequest("slow:10", count: 30)) { r in
          var n = 0
          for try await _ in r.messages { n += 1 }
          return n
        }
      }
      _ = await probe.eventually { probe.writeCount >= 2 }
      let drained = Task { try await server.drain() }
      let count = try await inFlight.value
      XCTAssertEqual(count, 30, "the in-flight stream completes during the drain")
      try await drained.value
      let error = await expectRPCError { _ = try await echo.unary(echoRequest("late")) }
      XCTAssertEqual(error?.code, .unavailable)
    }
  }

  func testDrainGracePeriodEndsLongCalls() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)]) {
      $0.connection.drainGrace = .milliseconds(300)
    }
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let endless = Task {
        try await echo.serverStream(echoRequest("slow:10", count: 1_000_000)) { r in for try await _ in r.messages {} }
      }
      _ = await probe.eventually { probe.writeCount >= 2 }
      let started = ContinuousClock.now
      try await server.drain()
      XCTAssertLessThan(ContinuousClock.now - started, .seconds(3), "shutdown does not wait forever on a long stream")
      let result = await endless.result
      guard case .failure(let error as RPCError) = result else { return XCTFail("\(result)") }
      XCTAssertEqual(error.code, .unavailable)
      let cancelled = await probe.eventually { probe.cancelCount == 1 }
      XCTAssertTrue(cancelled)
    }
  }

  func testPeerKilledMidStreamGivesUnavailable() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let call = Task {
        try await echo.serverStream(echoRequest("slow:5", count: 1_000_000)) { r in for try await _ in r.messages {} }
      }
      _ = await probe.eventually { probe.writeCount >= 3 }
      await server.kill()
      let result = await call.result
      guard case .failure(let error as RPCError) = result else { return XCTFail("\(result)") }
      XCTAssertEqual(error.code, .unavailable)
      let cancelled = await probe.eventually { probe.cancelCount == 1 }
      XCTAssertTrue(cancelled, "the server's handler sees the connection loss")
    }
  }

  func testRoundRobinAlternatesAndLeastRequestsAvoidsTheBusyReplica() async throws {
    let probeA = Probe(), probeB = Probe()
    let a = try await FramedTestServer(services: [ControlledEchoService(probe: probeA)])
    let b = try await FramedTestServer(services: [ControlledEchoService(probe: probeB)])
    try await withFramedClient([a.target, b.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      var o = CallOptions.defaults
      o.waitForReady = true
      // Until both connections are up, calls may all go to the first one.
      var seen = 0
      while probeA.callCount == 0 || probeB.callCount == 0, seen < 200 {
        _ = try await echo.unary(echoRequest("warm"), options: o)
        seen += 1
      }
      XCTAssertTrue(probeA.callCount > 0 && probeB.callCount > 0, "both replicas must be reached")
      let (a0, b0) = (probeA.callCount, probeB.callCount)
      for _ in 0..<20 { _ = try await echo.unary(echoRequest("x")) }
      XCTAssertEqual(probeA.callCount - a0, 10)
      XCTAssertEqual(probeB.callCount - b0, 10)
    }
    try await withFramedClient([a.target, b.target], configure: { $0.loadBalancing = .leastRequests }) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      var o = CallOptions.defaults
      o.waitForReady = true
      // Fresh client: wait until it has calls landing on both replicas.
      let baseA = probeA.callCount, baseB = probeB.callCount
      var tries = 0
      while probeA.callCount == baseA || probeB.callCount == baseB, tries < 200 {
        _ = try await echo.unary(echoRequest("w"), options: o)
        tries += 1
      }
      XCTAssertLessThan(tries, 200, "both replicas must be reached")
      // Occupy one replica with long calls; new calls then go to the other.
      let a0 = probeA.callCount, b0 = probeB.callCount
      let busy = (0..<3).map { _ in Task { try await echo.unary(echoRequest("sleep:400")) } }
      _ = await probeA.eventually { probeA.callCount + probeB.callCount - a0 - b0 == 3 }
      let busyOnA = probeA.callCount - a0
      for _ in 0..<6 { _ = try await echo.unary(echoRequest("quick")) }
      let quickOnA = probeA.callCount - a0 - busyOnA
      let quickOnB = probeB.callCount - b0 - (3 - busyOnA)
      if busyOnA >= 2 { XCTAssertGreaterThan(quickOnB, quickOnA) } else { XCTAssertGreaterThan(quickOnA, quickOnB) }
      for t in busy { _ = try await t.value }
    }
    try await a.drain()
    try await b.drain()
  }

  func testCallsMoveToTheOtherReplicaWhenOneDrains() async throws {
    let probeA = Probe(), probeB = Probe()
    let a = try await FramedTestServer(services: [ControlledEchoService(probe: probeA)])
    let b = try await FramedTestServer(services: [ControlledEchoService(probe: probeB)])
    try await withFramedClient([a.target, b.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      var o = CallOptions.defaults
      o.waitForReady = true
      while probeA.callCount == 0 || probeB.callCount == 0 { _ = try await echo.unary(echoRequest("w"), options: o) }
      try await a.drain()
      let b0 = probeB.callCount
      for _ in 0..<20 { _ = try await echo.unary(echoRequest("after")) }
      XCTAssertEqual(probeB.callCount - b0, 20, "every call after the drain went to B, none failed")
    }
    try await b.drain()
  }

  func testClientReconnectsWhenTheServerComesBack() async throws {
    let first = try await FramedTestServer(services: [EchoService()])
    let port = first.target.port
    try await withFramedClient([first.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      _ = try await echo.unary(echoRequest("one"))
      await first.kill()
      let down = await expectRPCError { _ = try await echo.unary(echoRequest("down")) }
      XCTAssertEqual(down?.code, .unavailable)
      let second = try await FramedTestServer(services: [EchoService()], port: port)
      var o = CallOptions.defaults
      o.waitForReady = true
      o.timeout = .seconds(5)
      let back = try await echo.unary(echoRequest("back"), options: o)
      XCTAssertEqual(back.payload, Data("back".utf8))
      try await second.drain()
    }
  }

  /// With a retry policy and no replica reachable, a call fails at once with UNAVAILABLE (after
  /// its retries), not at its deadline: GRPCCore 2.4.3 holds a call whose `withStream` throws
  /// until the deadline, so the transport answers with a failed stream instead.
  func testNoReachableReplicaFailsFastEvenWithARetryPolicy() async throws {
    // A port that was just free: nothing listens there.
    let server = try await FramedTestServer(services: [EchoService()])
    let target = server.target
    await server.kill()
    let retry = RetryPolicy(
      maxAttempts: 3, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(50), backoffMultiplier: 2,
      retryableStatusCodes: [.unavailable])
    try await withFramedClient(
      [target],
      configure: { config in
        config.serviceConfig = ServiceConfig(methodConfig: [
          MethodConfig(names: [MethodConfig.Name(service: "")], timeout: .seconds(5), executionPolicy: .retry(retry))
        ])
      }
    ) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      for _ in 0..<3 {
        let start = ContinuousClock.now
        do {
          _ = try await echo.unary(echoRequest("x"))
          XCTFail("answered with no server")
        } catch let error as RPCError {
          XCTAssertEqual(error.code, .unavailable, error.message)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(2), "failed at once, not at the 5 s deadline")
      }
    }
  }

  /// What a replica's answers tell its breaker: only UNAVAILABLE, DEADLINE_EXCEEDED and
  /// DATA_LOSS are the replica's failures; INTERNAL and UNKNOWN (a handler bug some input
  /// triggers) and the caller's own mistakes are not, so nobody can open the breakers by
  /// sending that input again and again.
  func testOnlyGatewayFailuresCountAgainstAReplica() async throws {
    final class RecordingGate: ReplicaGate {
      let outcomes = Mutex<[Bool]>([])
      func admit(replica index: Int) -> Bool { true }
      func record(replica index: Int, failed: Bool) { self.outcomes.withLock { $0.append(failed) } }
      func release(replica index: Int) {}
      func unreachable(replica index: Int) {}
    }
    let gate = RecordingGate()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: Probe())])
    try await withFramedClient([server.target], configure: { $0.replicaGate = gate }) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let codes: [Status.Code] = [.internalError, .unknown, .invalidArgument, .notFound, .unavailable, .deadlineExceeded, .dataLoss]
      for code in codes { _ = await expectRPCError { _ = try await echo.unary(echoRequest("status:\(code.rawValue)")) } }
      _ = try await echo.unary(echoRequest("fine"))
      XCTAssertEqual(gate.outcomes.withLock { $0 }, [false, false, false, false, true, true, true, false])
    }
    try await server.drain()
  }

  func testBackoffGrowsWithJitterAndResets() {
    var b = Backoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0.2)
    XCTAssertEqual(b.next(unit: 0.5), .milliseconds(100))
    XCTAssertEqual(b.next(unit: 0.5), .milliseconds(200))
    XCTAssertEqual(b.next(unit: 0), .milliseconds(320), "−20 % jitter of 400 ms")
    XCTAssertEqual(b.next(unit: 0.5), .milliseconds(800))
    XCTAssertEqual(b.next(unit: 0.5), .seconds(1), "capped")
    b.reset()
    XCTAssertEqual(b.next(unit: 0.5), .milliseconds(100))
  }

  func testLoadBalancerPolicies() {
    var rr = LoadBalancer(policy: .roundRobin)
    XCTAssertEqual((0..<4).map { _ in rr.pick([(0, 9), (1, 0)]) }, [0, 1, 0, 1])
    var lr = LoadBalancer(policy: .leastRequests)
    XCTAssertEqual((0..<4).map { _ in lr.pick([(0, 9), (1, 0), (2, 3)]) }, [1, 1, 1, 1])
    XCTAssertNil(lr.pick([]))
  }
}
