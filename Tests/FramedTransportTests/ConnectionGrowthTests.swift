import BenchService
import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import XCTest

/// A replica's connection carries at most the server's MAX_CONCURRENT_STREAMS; the client
/// opens more connections as streams need them and queues short calls within their deadline
/// when it may open no more.
final class ConnectionGrowthTests: XCTestCase {
  /// Holds `count` bidi streams open until every one has its first answer, runs `whileOpen`,
  /// then closes them all.
  private func holdStreams(
    _ echo: Bench_V1_EchoService.Client<FramedClientTransport>, count: Int, whileOpen: @escaping @Sendable () async throws -> Void
  ) async throws {
    let opened = Probe()
    let release = Probe()
    try await withThrowingTaskGroup(of: Void.self) { group in
      for i in 0..<count {
        group.addTask {
          let (requests, continuation) = AsyncStream.makeStream(of: Bench_V1_EchoRequest.self)
          try await echo.bidi(request: StreamingClientRequest { w in for await r in requests { try await w.write(r) } }) { response in
            continuation.yield(echoRequest("s\(i)"))
            var iterator = response.messages.makeAsyncIterator()
            let first = try await iterator.next()
            XCTAssertEqual(first?.payload, Data("s\(i)".utf8))
            opened.called()
            _ = await release.eventually(.seconds(30)) { release.callCount > 0 }
            continuation.finish()
            while try await iterator.next() != nil {}
          }
        }
      }
      group.addTask {
        let all = await opened.eventually(.seconds(30)) { opened.callCount == count }
        XCTAssertTrue(all, "only \(opened.callCount) of \(count) streams opened")
        try await whileOpen()
        release.called()
      }
      try await group.waitForAll()
    }
  }

  func testStreamsBeyondTheServersLimitGetMoreConnections() async throws {
    let server = try await FramedTestServer(services: [EchoService()]) { $0.connection.settings.maxConcurrentStreams = 4 }
    try await withFramedClient(
      [server.target],
      configure: {
        $0.maxConnectionsPerReplica = 4
        $0.extraConnectionIdleTime = .milliseconds(300)
      }
    ) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      // 12 long-lived streams on a server that takes 4 per connection: none waits or fails.
      try await self.holdStreams(echo, count: 12) {
        XCTAssertEqual(server.transport.connectionCount, 3)
        // A short call still finds room: a fourth connection opens for it.
        let reply = try await echo.unary(echoRequest("short"))
        XCTAssertEqual(reply.payload, Data("short".utf8))
      }
      // The extra connections close once idle; the replica's first one stays.
      let probe = Probe()
      let shrunk = await probe.eventually(.seconds(10)) { server.transport.connectionCount == 1 }
      XCTAssertTrue(shrunk, "still \(server.transport.connectionCount) connections")
      let reply = try await echo.unary(echoRequest("after"))
      XCTAssertEqual(reply.payload, Data("after".utf8))
    }
    try await server.drain()
  }

  func testShortCallsWaitForAStreamSlotWithinTheirDeadline() async throws {
    let server = try await FramedTestServer(services: [EchoService()]) { $0.connection.settings.maxConcurrentStreams = 2 }
    try await withFramedClient([server.target], configure: { $0.maxConnectionsPerReplica = 1 }) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      try await self.holdStreams(echo, count: 2) {
        // No slot and no connection to open: the call waits and its deadline ends it, as a
        // deadline, not as RESOURCE_EXHAUSTED.
        var options = CallOptions.defaults
        options.timeout = .milliseconds(200)
        let error = await expectRPCError { _ = try await echo.unary(echoRequest("late"), options: options) }
        XCTAssertEqual(error?.code, .deadlineExceeded, error?.message ?? "")
        XCTAssertEqual(server.transport.connectionCount, 1)
      }
      // The same call, queued while the streams are open, goes through once they end.
      let reply = try await echo.unary(echoRequest("queued"))
      XCTAssertEqual(reply.payload, Data("queued".utf8))
    }
    try await server.drain()
  }

  func testAQueuedCallTakesTheSlotAStreamFrees() async throws {
    let server = try await FramedTestServer(services: [EchoService()]) { $0.connection.settings.maxConcurrentStreams = 1 }
    try await withFramedClient([server.target], configure: { $0.maxConnectionsPerReplica = 1 }) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      // 50 unary calls through a single stream slot: each waits for the previous one.
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<50 {
          group.addTask {
            let reply = try await echo.unary(echoRequest("q\(i)"))
            XCTAssertEqual(reply.payload, Data("q\(i)".utf8))
          }
        }
        try await group.waitForAll()
      }
      XCTAssertEqual(server.transport.connectionCount, 1)
    }
    try await server.drain()
  }
}
