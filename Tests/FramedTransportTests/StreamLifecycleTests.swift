import BenchService
import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import XCTest

/// Deadlines, cancellation, compression, limits and flow control over real sockets.
final class StreamLifecycleTests: XCTestCase {
  func testDeadlineExceededCancelsTheHandler() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      var options = CallOptions.defaults
      options.timeout = .milliseconds(150)
      let started = ContinuousClock.now
      let error = await expectRPCError { _ = try await echo.unary(echoRequest("sleep:10000"), options: options) }
      XCTAssertEqual(error?.code, .deadlineExceeded)
      XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
      let cancelled = await probe.eventually { probe.cancelCount == 1 }
      XCTAssertTrue(cancelled, "the server must cancel the handler when the deadline passes")
    }
    try await server.drain()
  }

  func testClientCancelIsSeenByTheHandler() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let call = Task {
        try await echo.serverStream(echoRequest("slow:5", count: 100_000)) { response in
          for try await _ in response.messages {}
        }
      }
      _ = await probe.eventually { probe.writeCount >= 3 }
      call.cancel()
      _ = await call.result
      let cancelled = await probe.eventually { probe.cancelCount == 1 }
      XCTAssertTrue(cancelled, "RST(CANCEL) must reach the streaming handler")
      let written = probe.writeCount
      try await Task.sleep(for: .milliseconds(50))
      XCTAssertEqual(probe.writeCount, written, "the handler stopped writing")
      // The connection is fine for the next call.
      let ok = try await echo.unary(echoRequest("after"))
      XCTAssertEqual(ok.payload, Data("after".utf8))
    }
    let leaked = await server.transport.openStreamCount()
    XCTAssertEqual(leaked, 0)
    try await server.drain()
  }

  func testGzipAndDeflateRoundTrip() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    for algorithm in [CompressionAlgorithm.gzip, .deflate] {
      try await withFramedClient([server.target]) { grpc in
        let echo = Bench_V1_EchoService.Client(wrapping: grpc)
        var options = CallOptions.defaults
        options.compression = algorithm
        let text = String(repeating: "compress me please ", count: 5000)
        let reply = try await echo.unary(echoRequest(text), options: options)
        XCTAssertEqual(reply.payload, Data(text.utf8))
        let n = try await echo.serverStream(echoRequest(text, count: 3), options: options) { r in
          var n = 0
          for try await m in r.messages where m.payload == Data(text.utf8) { n += 1 }
          return n
        }
        XCTAssertEqual(n, 3)
      }
    }
    try await server.drain()
  }

  func testFourMebibyteMessagesPassAndLargerOnesFailClearly() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let big = echoRequest(bytes: 4 * 1024 * 1024 - 16)  // encodes to just under 4 MiB
      let reply = try await echo.unary(big)
      XCTAssertEqual(reply.payload, big.payload)
      let tooBig = echoRequest(bytes: 4 * 1024 * 1024)
      let error = await expectRPCError { _ = try await echo.unary(tooBig) }
      XCTAssertEqual(error?.code, .resourceExhausted)
      XCTAssertTrue(error?.message.contains("MAX_MESSAGE_SIZE") ?? false, error?.message ?? "")
      XCTAssertTrue(error?.message.contains("peer's limit of 4194304") ?? false, error?.message ?? "")
      // The connection survives the refusal (framing-anchors §9.4).
      let small = try await echo.unary(echoRequest("still here"))
      XCTAssertEqual(small.payload, Data("still here".utf8))
    }
    try await server.drain()
  }

  func testClientHonoursTheServersSmallerLimit() async throws {
    let server = try await FramedTestServer(services: [EchoService()]) { $0.connection.settings.maxMessageSize = 64 * 1024 }
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let error = await expectRPCError { _ = try await echo.unary(echoRequest(bytes: 100_000)) }
      XCTAssertEqual(error?.code, .resourceExhausted)
      XCTAssertTrue(error?.message.contains("peer's limit of 65536") ?? false, error?.message ?? "")
    }
    try await server.drain()
  }

  func testAThousandConcurrentStreamsOnOneConnection() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let opened = Probe()
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<1000 {
          group.addTask {
            let (requests, continuation) = AsyncStream.makeStream(of: Bench_V1_EchoRequest.self)
            try await echo.bidi(request: StreamingClientRequest { w in for await r in requests { try await w.write(r) } }) { response in
              continuation.yield(echoRequest("s\(i)"))
              var iterator = response.messages.makeAsyncIterator()
              let first = try await iterator.next()
              XCTAssertEqual(first?.payload, Data("s\(i)".utf8))
              opened.called()
              // Hold the stream open until all thousand are open at once, on one connection.
              if opened.callCount == 1000 { XCTAssertEqual(server.transport.connectionCount, 1) }
              _ = await opened.eventually(.seconds(30)) { opened.callCount == 1000 }
              continuation.finish()
              while try await iterator.next() != nil {}
            }
          }
        }
        try await group.waitForAll()
      }
      XCTAssertEqual(opened.callCount, 1000)
    }
    try await server.drain()
  }

  func testSlowReaderBoundsWhatTheServerBuffers() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      var request = echoRequest(bytes: 16 * 1024, count: 2000)
      request.payload = Data(repeating: 1, count: 16 * 1024)
      try await echo.serverStream(request) { response in
        var iterator = response.messages.makeAsyncIterator()
        _ = try await iterator.next()
        // Stop reading. The server may have at most one stream window (256 KiB) in flight plus
        // its writer's queue limit (256 KiB) plus the message being written.
        try await Task.sleep(for: .milliseconds(400))
        let bound = (256 * 1024 + 256 * 1024) / (16 * 1024) + 3
        XCTAssertLessThanOrEqual(probe.writeCount, bound, "a stalled reader must pin the sender")
        XCTAssertGreaterThan(probe.writeCount, 8, "but the window itself must be used")
        var n = 1
        while try await iterator.next() != nil { n += 1 }
        XCTAssertEqual(n, 2000)
      }
    }
    try await server.drain()
  }

  func testOneBlockedStreamDoesNotBlockTheConnection() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      // Stream A: the client writes 8 MiB of bidi requests without reading the echoes, so
      // both directions of A fill up and stall (framing-anchors §9.1, §9.2).
      let blocked = Task {
        try await echo.bidi(
          request: StreamingClientRequest { w in
            for _ in 0..<128 { try await w.write(echoRequest(bytes: 64 * 1024)) }
          }
        ) { response in
          try await Task.sleep(for: .milliseconds(300))
          var n = 0
          for try await _ in response.messages { n += 1 }
          return n
        }
      }
      try await Task.sleep(for: .milliseconds(100))
      // Stream B on the same connection still gets through while A is stalled.
      let started = ContinuousClock.now
      for _ in 0..<10 { _ = try await echo.unary(echoRequest("b")) }
      XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(250), "B must not wait for A")
      let echoed = try await blocked.value
      XCTAssertEqual(echoed, 128, "A completes once its reader reads")
    }
    try await server.drain()
  }
}
