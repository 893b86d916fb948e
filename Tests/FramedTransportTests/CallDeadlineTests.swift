import BenchService
import FramedTransport
import FramedWire
import GRPCCore
import NIOCore
import QuizwireProtos
import WireProtos
import XCTest

/// `FramedClientTransport.callDeadline`: the transport enforces a call's deadline itself (a
/// loop timer, no GRPCCore timeout tasks) — against a server that never answers, while the
/// call waits for a stream slot, and on the wire as the call's `timeout_us`.
final class CallDeadlineTests: XCTestCase {
  /// A server that completes the handshake and then never answers a call: only the client's
  /// own timer can end it.
  func testACallToAServerThatNeverAnswersEndsAtItsDeadlineAndIsReset() async throws {
    let server = try await RawServer { item, out in RawServer.handshake(item, &out) }
    try await withFramedClient([FramedTarget(host: "127.0.0.1", port: server.port)]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let started = ContinuousClock.now
      let error = await expectRPCError {
        try await FramedClientTransport.$callDeadline.withValue(started + .milliseconds(300)) {
          _ = try await echo.unary(echoRequest("anyone there?"))
        }
      }
      let took = ContinuousClock.now - started
      XCTAssertEqual(error?.code, .deadlineExceeded, "\(String(describing: error))")
      XCTAssertGreaterThanOrEqual(took, .milliseconds(290), "not before the deadline")
      XCTAssertLessThan(took, .seconds(2), "the client's timer, not a keepalive or a default, ended it")
    }
    // The server was told the deadline and, when it passed, that the call is over.
    var sawReset = false
    for _ in 0..<200 where !sawReset {
      sawReset = server.received.withLockedValue { items in items.contains { if case .frame(.rst) = $0 { true } else { false } } }
      if !sawReset { try await Task.sleep(for: .milliseconds(10)) }
    }
    let items = server.received.withLockedValue { $0 }
    let timeouts = items.compactMap { item -> UInt64? in
      guard case .frame(.headers(_, _, let payload)) = item else { return nil }
      return try? RequestHeaders(serializedBytes: Array(payload.readableBytesView)).timeoutUs
    }
    XCTAssertEqual(timeouts.count, 1)
    XCTAssertTrue(timeouts.allSatisfy { $0 > 200_000 && $0 <= 300_000 }, "timeout_us \(timeouts)")
    XCTAssertTrue(sawReset, "the stream was reset at the deadline: \(items)")
    await server.close()
  }

  /// A `grpc-timeout` in the metadata that is sooner than the call's deadline is the one sent
  /// and the one the client's timer keeps.
  func testTheSoonerOfTheMetadataTimeoutAndTheDeadlineIsSent() async throws {
    let server = try await RawServer { item, out in RawServer.handshake(item, &out) }
    try await withFramedClient([FramedTarget(host: "127.0.0.1", port: server.port)]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let started = ContinuousClock.now
      let error = await expectRPCError {
        try await FramedClientTransport.$callDeadline.withValue(.now + .seconds(5)) {
          _ = try await echo.unary(echoRequest("x"), metadata: ["grpc-timeout": "150m"])
        }
      }
      XCTAssertEqual(error?.code, .deadlineExceeded)
      XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "the client's timer keeps the sooner deadline too")
    }
    let timeouts = server.received.withLockedValue { items in
      items.compactMap { item -> UInt64? in
        guard case .frame(.headers(_, _, let payload)) = item else { return nil }
        return try? RequestHeaders(serializedBytes: Array(payload.readableBytesView)).timeoutUs
      }
    }
    XCTAssertEqual(timeouts, [150_000])
    await server.close()
  }

  /// With the only connection at the server's MAX_CONCURRENT_STREAMS, a call queues for a
  /// slot; it gives up at its deadline instead of waiting for ever.
  func testACallQueuedForAStreamSlotGivesUpAtItsDeadline() async throws {
    let server = try await RawServer { item, out in
      if case .preface = item {
        Preface.write(into: &out)
        var settings = ConnectionSettings()
        settings.maxConcurrentStreams = 1
        FrameEncoder.encodeSettings(settings, into: &out)
      }
    }
    try await withFramedClient([FramedTarget(host: "127.0.0.1", port: server.port)], configure: { $0.maxConnectionsPerReplica = 1 }) {
      grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      // Takes the one slot and keeps it: the server never answers.
      let holder = Task {
        try await FramedClientTransport.$callDeadline.withValue(.now + .seconds(20)) { _ = try await echo.unary(echoRequest("hold")) }
      }
      defer { holder.cancel() }
      for _ in 0..<200 {
        let opened = server.received.withLockedValue { items in items.contains { if case .frame(.headers) = $0 { true } else { false } } }
        if opened { break }
        try await Task.sleep(for: .milliseconds(10))
      }
      let started = ContinuousClock.now
      let error = await expectRPCError {
        try await FramedClientTransport.$callDeadline.withValue(started + .milliseconds(200)) { _ = try await echo.unary(echoRequest("queued")) }
      }
      let took = ContinuousClock.now - started
      XCTAssertEqual(error?.code, .deadlineExceeded, "\(String(describing: error))")
      XCTAssertTrue(error?.message.contains("free stream slot") ?? false, error?.message ?? "")
      XCTAssertGreaterThanOrEqual(took, .milliseconds(190))
      XCTAssertLessThan(took, .seconds(2))
      holder.cancel()
      _ = await holder.result
    }
    await server.close()
  }

  /// The normal case: a real server answers long before the deadline, and a call whose
  /// handler outlives it is ended by the server (handler cancelled) at the same deadline.
  func testARealServerAnswersWithinAndEndsAtTheDeadline() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let reply = try await FramedClientTransport.$callDeadline.withValue(.now + .seconds(5)) { try await echo.unary(echoRequest("hi")) }
      XCTAssertEqual(reply.payload, echoRequest("hi").payload)
      let error = await expectRPCError {
        try await FramedClientTransport.$callDeadline.withValue(.now + .milliseconds(150)) { _ = try await echo.unary(echoRequest("sleep:10000")) }
      }
      XCTAssertEqual(error?.code, .deadlineExceeded)
      let cancelled = await probe.eventually { probe.cancelCount == 1 }
      XCTAssertTrue(cancelled, "the server cancelled the handler at the deadline it was sent")
    }
    try await server.drain()
  }
}
