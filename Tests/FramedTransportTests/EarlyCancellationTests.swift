import BenchService
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import QuizwireProtos
import ServiceKit
import XCTest

@testable import FramedTransport

/// What the waiting handler saw: how many calls started and how many of them saw their
/// request stream end (cleanly or with an error).
final class HandlerLedger: Sendable {
  private let state = NIOLockedValueBox((started: 0, ended: 0, failed: 0))
  func start() { self.state.withLockedValue { $0.started += 1 } }
  func end(failed: Bool) {
    self.state.withLockedValue {
      $0.ended += 1
      if failed { $0.failed += 1 }
    }
  }
  var started: Int { self.state.withLockedValue { $0.started } }
  var ended: Int { self.state.withLockedValue { $0.ended } }
  var failed: Int { self.state.withLockedValue { $0.failed } }
  var running: Int { self.state.withLockedValue { $0.started - $0.ended } }
}

/// `bench.v1.EchoService` whose streaming handlers do nothing but wait on their request stream
/// (as ScoringService/Play does between answers) and record how that wait ended.
struct WaitingEchoService: Bench_V1_EchoService.ServiceProtocol {
  let ledger: HandlerLedger

  func unary(request: ServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> ServerResponse<Bench_V1_EchoResponse> {
    ServerResponse(message: Bench_V1_EchoResponse())
  }

  func serverStream(request: ServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> StreamingServerResponse<Bench_V1_EchoResponse> {
    StreamingServerResponse { _ in [:] }
  }

  func clientStream(request: StreamingServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> ServerResponse<Bench_V1_EchoResponse> {
    try await self.wait(on: request.messages)
    return ServerResponse(message: Bench_V1_EchoResponse())
  }

  func bidi(request: StreamingServerRequest<Bench_V1_EchoRequest>, context: ServerContext) async throws -> StreamingServerResponse<Bench_V1_EchoResponse> {
    let ledger = self.ledger
    return StreamingServerResponse { _ in
      try await WaitingEchoService(ledger: ledger).wait(on: request.messages)
      return [:]
    }
  }

  private func wait(on messages: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>) async throws {
    self.ledger.start()
    do {
      for try await _ in messages {}
      self.ledger.end(failed: false)
    } catch {
      self.ledger.end(failed: true)
      throw error
    }
  }
}

/// A call abandoned right after it opened — cancelled, or its request producer failed — must
/// end on the server too: the handler's request stream ends and the stream count returns to 0.
final class EarlyCancellationTests: XCTestCase {
  struct ProducerFailed: Error {}

  /// Until the server holds no stream and every started handler saw its request stream end.
  /// Until the server holds no stream, every started handler saw its request stream end, and
  /// the server's `rpc_server_in_flight` gauge is back to 0.
  private func settled(_ server: Served, within bound: Duration = .seconds(2)) async -> (Bool, String) {
    let deadline = ContinuousClock.now + bound
    var open = -1
    var inFlight = -1.0
    while ContinuousClock.now < deadline {
      open = await server.server.transport.openStreamCount()
      inFlight = server.inFlight
      if open == 0 && server.ledger.running == 0 && inFlight == 0 { return (true, "") }
      try? await Task.sleep(for: .milliseconds(5))
    }
    return (false, "open streams \(open), handlers still waiting \(server.ledger.running) of \(server.ledger.started), in flight \(inFlight)")
  }

  /// The waiting service behind ServiceKit's metrics interceptor.
  struct Served {
    let ledger = HandlerLedger()
    let metrics = HostMetrics()
    let server: FramedTestServer

    init(configure: (inout FramedServerTransport.Config) -> Void = { _ in }) async throws {
      self.server = try await FramedTestServer(
        services: [WaitingEchoService(ledger: self.ledger)], interceptors: [MetricsInterceptor(metrics: self.metrics)], configure: configure)
    }

    /// The sum of `rpc_server_in_flight` over every method.
    var inFlight: Double {
      self.metrics.exposition().split(separator: "\n")
        .filter { $0.hasPrefix("rpc_server_in_flight{") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        .reduce(0, +)
    }
  }

  private func waitingCall(_ echo: Bench_V1_EchoService.Client<FramedClientTransport>, firstMessage: Bool) -> Task<Void, any Error> {
    Task {
      try await echo.bidi(
        request: StreamingClientRequest { w in
          if firstMessage { try await w.write(echoRequest("a")) }
          try await Task.sleep(for: .seconds(60))
        }
      ) { response in
        for try await _ in response.messages {}
      }
    }
  }

  func testACallCancelledAsSoonAsItOpensEndsOnTheServer() async throws {
    let served = try await Served()
    let (ledger, server) = (served.ledger, served.server)
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      for round in 0..<20 {
        // Once the handler waits on its request stream, with and without a first message.
        let startedBefore = ledger.started
        let call = self.waitingCall(echo, firstMessage: round % 2 == 0)
        let started = await Probe().eventually(.seconds(2)) { ledger.started > startedBefore }
        XCTAssertTrue(started, "round \(round): the handler started")
        call.cancel()
        _ = await call.result
        let (ok, state) = await self.settled(served)
        XCTAssertTrue(ok, "round \(round): \(state)")
      }
      XCTAssertEqual(ledger.failed, ledger.ended, "a cancelled call's request stream fails, it does not end cleanly")
    }
    try await server.drain()
  }

  func testACallCancelledBeforeOrWhileItOpensEndsOnTheServer() async throws {
    let served = try await Served()
    let (ledger, server) = (served.ledger, served.server)
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      _ = try await echo.unary(echoRequest("warm"))  // the connection is up
      for round in 0..<40 {
        // No waiting for anything: the cancel lands anywhere between the pool pick and the
        // server starting the handler.
        let call = self.waitingCall(echo, firstMessage: round % 2 == 0)
        if round % 4 >= 2 { try await Task.sleep(for: .microseconds(200 * (round % 7))) }
        call.cancel()
        _ = await call.result
        let (ok, state) = await self.settled(served)
        XCTAssertTrue(ok, "round \(round): \(state)")
      }
      // The connection still takes calls.
      _ = try await echo.unary(echoRequest("after"))
    }
    try await server.drain()
  }

  func testARequestProducerThatThrowsAtOnceEndsTheCallOnTheServer() async throws {
    let served = try await Served()
    let (ledger, server) = (served.ledger, served.server)
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      for round in 0..<20 {
        let error = await expectRPCError {
          if round % 2 == 0 {
            try await echo.bidi(request: StreamingClientRequest { _ in throw ProducerFailed() }) { r in for try await _ in r.messages {} }
          } else {
            _ = try await echo.clientStream(request: StreamingClientRequest { _ in throw ProducerFailed() })
          }
        }
        XCTAssertNotNil(error, "round \(round)")
        let (ok, state) = await self.settled(served)
        XCTAssertTrue(ok, "round \(round): \(state)")
      }
      XCTAssertEqual(ledger.failed, ledger.ended, "a failed request stream is not a clean end")
    }
    try await server.drain()
  }

  /// The server's MAX_CONCURRENT_STREAMS is reached: the second call waits in the client's
  /// pool for a slot and is cancelled there; then the first is cancelled too.
  func testACallCancelledWhileWaitingForAStreamSlotLeavesNothingOpen() async throws {
    let served = try await Served { $0.connection.settings.maxConcurrentStreams = 1 }
    let (ledger, server) = (served.ledger, served.server)
    try await withFramedClient([server.target], configure: { $0.maxConnectionsPerReplica = 1 }) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      for round in 0..<10 {
        let startedBefore = ledger.started
        let holder = self.waitingCall(echo, firstMessage: true)
        let holding = await Probe().eventually(.seconds(2)) { ledger.started > startedBefore }
        XCTAssertTrue(holding, "round \(round): the first call holds the only slot")
        let queued = self.waitingCall(echo, firstMessage: round % 2 == 0)
        try await Task.sleep(for: .milliseconds(round % 3 == 0 ? 0 : 20))
        queued.cancel()
        holder.cancel()
        _ = await queued.result
        _ = await holder.result
        let (ok, state) = await self.settled(served)
        XCTAssertTrue(ok, "round \(round): \(state)")
        XCTAssertEqual(server.transport.connectionCount, 1, "the slot wait did not open a second connection")
      }
      // The slot is free again.
      _ = try await echo.unary(echoRequest("after"))
    }
    try await server.drain()
  }

  /// The cause of the leaks above: GRPCCore runs a call's response producer only after its
  /// response headers were written. When the client's RST had already ended the call, the
  /// writer threw, the producer never ran, and interceptors that wrap it (the in-flight gauge)
  /// never saw the call end. The headers of an ended call are dropped, not thrown; the
  /// producer then sees the end at its first write or read.
  func testResponseHeadersOfACallThatAlreadyEndedAreDroppedNotThrown() async throws {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let commands = ConnectionCommands(eventLoop: loop)
    let performed = NIOLockedValueBox(0)
    commands.setSink { batch in performed.withLockedValue { $0 += batch.count } }
    func writer() -> (FramedStream<RPCRequestPart<FramedBytes>>, ServerStreamWriter) {
      let stream = FramedStream<RPCRequestPart<FramedBytes>>(connection: commands, creditThreshold: 1, writeLimit: 1 << 20)
      stream.streamID = 1
      return (stream, ServerStreamWriter(stream: stream, encoding: .identity, peerMaxMessageSize: 1 << 20, compressionMinBytes: 1024))
    }

    let (ended, endedWriter) = writer()
    ended.fail(RPCError(code: .cancelled, message: "reset by the client"))
    try await endedWriter.write(.metadata(["x-a": "b"]))
    try await loop.submit {}.get()
    XCTAssertEqual(performed.withLockedValue { $0 }, 0, "nothing is sent for an ended call")
    let writeError = await expectRPCError { try await endedWriter.write(.message(FramedBytes([1, 2, 3]))) }
    XCTAssertEqual(writeError?.code, .cancelled, "the producer's first write sees the end")
    let readError = await expectRPCError { _ = try await ended.next() }
    XCTAssertEqual(readError?.code, .cancelled, "and so does its first read")

    let (_, liveWriter) = writer()
    try await liveWriter.write(.metadata(["x-a": "b"]))
    try await loop.submit {}.get()
    XCTAssertEqual(performed.withLockedValue { $0 }, 1, "a live call's headers go out")
  }

  /// The same over the gRPC/HTTP2 listener: its transport drops the response headers of a call
  /// the client already reset by throwing, so GRPCCore never runs the producer; ServiceKit's
  /// observation must still end the call (before: `rpc_server_in_flight` kept about half).
  func testOverHTTP2ACallCancelledAnywhereLeavesNothingInFlight() async throws {
    let ledger = HandlerLedger()
    let metrics = HostMetrics()
    let server = try await H2TestServer(services: [WaitingEchoService(ledger: ledger)], interceptors: [MetricsInterceptor(metrics: metrics)])
    func inFlight() -> Double {
      metrics.exposition().split(separator: "\n").filter { $0.hasPrefix("rpc_server_in_flight{") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
    }
    try await withH2Client(port: server.port) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      _ = try await echo.unary(echoRequest("warm"))
      for round in 0..<40 {
        let call = Task {
          try await echo.bidi(
            request: StreamingClientRequest { w in
              if round % 2 == 0 { try await w.write(echoRequest("a")) }
              try await Task.sleep(for: .seconds(60))
            }
          ) { response in for try await _ in response.messages {} }
        }
        if round % 4 >= 2 { try await Task.sleep(for: .microseconds(200 * (round % 7))) }
        call.cancel()
        _ = await call.result
      }
      let settled = await Probe().eventually(.seconds(2)) { inFlight() == 0 && ledger.running == 0 }
      XCTAssertTrue(settled, "in flight \(inFlight()), handlers still waiting \(ledger.running) of \(ledger.started)")
    }
    try await server.stop()
  }
}
