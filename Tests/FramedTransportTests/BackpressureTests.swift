import BenchService
import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import QuizwireProtos
import WireProtos
import XCTest

@testable import FramedTransport

/// Socket back-pressure: what a connection holds in user space when its peer stops reading.
final class BackpressureTests: XCTestCase {
  // MARK: The budget, without a channel

  func testAdmissionWaitsOverTheBudgetListsEachStreamOnceAndResumesAtHalf() {
    let commands = ConnectionCommands(eventLoop: EmbeddedEventLoop())
    commands.setBudget(1000)
    let a = RecordingHandle(), b = RecordingHandle()
    XCTAssertEqual(commands.sendMessage(.credit(a, 0), cost: 600, listedAt: nil), .go)
    XCTAssertEqual(commands.sendMessage(.credit(a, 0), cost: 600, listedAt: nil), .wait(epoch: 0))
    // Still listed at epoch 0: not listed again.
    XCTAssertEqual(commands.sendMessage(.credit(a, 0), cost: 100, listedAt: 0), .wait(epoch: 0))
    XCTAssertEqual(commands.sendMessage(.credit(b, 0), cost: 100, listedAt: nil), .wait(epoch: 0))
    commands.release(800)
    XCTAssertEqual(commands.queuedBytes, 600)
    XCTAssertTrue(a.resumed.isEmpty, "600 is above half the budget: nobody resumes yet")
    commands.release(100)
    XCTAssertEqual(a.resumed, [1])
    XCTAssertEqual(b.resumed, [1])
    XCTAssertEqual(commands.peakQueuedBytes, 1400)
    XCTAssertEqual(commands.sendMessage(.credit(a, 0), cost: 100, listedAt: nil), .go)
  }

  func testClosingResumesWaitingWritersAndRefusesMore() {
    let commands = ConnectionCommands(eventLoop: EmbeddedEventLoop())
    commands.setBudget(100)
    let a = RecordingHandle()
    XCTAssertEqual(commands.sendMessage(.credit(a, 0), cost: 200, listedAt: nil), .wait(epoch: 0))
    XCTAssertEqual(commands.close().count, 1)
    XCTAssertEqual(a.resumed, [1])
    XCTAssertEqual(commands.queuedBytes, 0)
    XCTAssertEqual(commands.sendMessage(.credit(a, 0), cost: 1, listedAt: nil), .closed)
  }

  func testAFailedStreamReturnsItsQueuedOutputToTheConnectionExactlyOnce() throws {
    let commands = ConnectionCommands(eventLoop: EmbeddedEventLoop())
    let stream = FramedStream<RPCRequestPart<FramedBytes>>(connection: commands, creditThreshold: 1, writeLimit: 1 << 20)
    for _ in 0..<3 {
      let (cost, listed) = try stream.willQueue(100)
      XCTAssertEqual(commands.sendMessage(.credit(stream, 0), cost: cost, listedAt: listed), .go)
    }
    commands.release(stream.sent(100))
    XCTAssertEqual(commands.queuedBytes, 200)
    stream.fail(RPCError(code: .cancelled, message: "gone"))
    XCTAssertEqual(commands.queuedBytes, 0)
    XCTAssertEqual(stream.sent(100), 0, "already returned by fail")
    stream.fail(RPCError(code: .cancelled, message: "again"))
    XCTAssertEqual(commands.queuedBytes, 0)
    XCTAssertThrowsError(try stream.willQueue(100))
  }

  func testOutputAfterTheStreamWasReleasedIsNotCharged() throws {
    let commands = ConnectionCommands(eventLoop: EmbeddedEventLoop())
    let stream = FramedStream<RPCResponsePart<FramedBytes>>(connection: commands, creditThreshold: 1, writeLimit: 1 << 20)
    let (cost, _) = try stream.willQueue(100)
    _ = commands.sendMessage(.credit(stream, 0), cost: cost, listedAt: nil)
    stream.releaseQueued()  // trailers arrived: the connection dropped the request output
    XCTAssertEqual(commands.queuedBytes, 0)
    XCTAssertEqual(try stream.willQueue(100).charge, 0)
    XCTAssertEqual(stream.sent(100), 0)
  }

  // MARK: The handler, on a testing channel

  func testAnUnwritableChannelStopsTheWritersAtTheBudgetAndWritabilityResumesThem() async throws {
    let budget = 64 * 1024
    let total = 400
    let peer = try await ServerUnderTest(budget: budget) { _ in total }
    await peer.setWritable(false)
    try await peer.handshake()
    // Two streams, each allowed the whole budget on its own: together they still get only that.
    try await peer.open(streamID: 1, method: "/t/stream")
    try await peer.open(streamID: 3, method: "/t/stream")
    let cost = WriteBudget.cost(message: 1024)
    let stopped = await peer.eventually { peer.probe.written >= budget / cost }
    XCTAssertTrue(stopped, "the writers queued \(peer.probe.written) messages")
    await peer.spin(for: .milliseconds(100))
    // The budget, plus per stream the message that found it exceeded.
    XCTAssertLessThanOrEqual(peer.probe.written, budget / cost + 2)
    XCTAssertLessThanOrEqual(peer.commands.queuedBytes, budget + 3 * cost)
    let whileUnwritable = try await peer.messageFrames()
    XCTAssertEqual(whileUnwritable, 0, "nothing moves while the channel is unwritable")

    await peer.setWritable(true)
    let finished = await peer.eventually { peer.probe.finished == 2 }
    XCTAssertTrue(finished, "writability resumed the writers: \(peer.probe.written) of \(2 * total) written")
    let afterwards = try await peer.messageFrames()
    XCTAssertEqual(afterwards, 2 * total)
    XCTAssertEqual(peer.commands.queuedBytes, 0)
  }

  func testClosingAConnectionWithAFullQueueFailsTheWriterAndReleasesTheQueue() async throws {
    let peer = try await ServerUnderTest(budget: 32 * 1024) { _ in 10_000 }
    await peer.setWritable(false)
    try await peer.handshake()
    try await peer.open(streamID: 1, method: "/t/stream")
    let queued = await peer.eventually { peer.commands.queuedBytes > 32 * 1024 }
    XCTAssertTrue(queued)
    try await peer.channel.close()
    let failed = await peer.eventually { peer.probe.failed == 1 }
    XCTAssertTrue(failed, "the blocked writer saw the connection go")
    XCTAssertEqual(peer.commands.queuedBytes, 0)
    XCTAssertLessThan(peer.probe.written, 10_000)
  }

  func testAStreamThePeerStalledDoesNotBlockTheOthers() async throws {
    // Stream 1's window (64 KiB) runs out and the peer never grants more: its queued output
    // keeps the connection over its small budget. Stream 3 still gets every message out, one
    // at a time, instead of waiting for a drain that never comes.
    let peer = try await ServerUnderTest(budget: 16 * 1024, streamWindow: 65_536) { method in
      method == "/t/stalled" ? 100_000 : 50
    }
    try await peer.handshake()
    try await peer.open(streamID: 1, method: "/t/stalled")
    // Once the window is used up, its writer waits with more than half the budget queued —
    // the mark below which waiting writers would resume, so no drain to it comes. How much
    // more depends on where the writer stopped: at its own cap (the budget), or earlier, when
    // a write was admitted over the budget while the connection had not yet counted output
    // the stream already saw leave (it then waits for that resume).
    let full = await peer.eventually { peer.commands.queuedBytes > 8 * 1024 }
    XCTAssertTrue(full, "the stalled stream holds over half the budget: \(peer.commands.queuedBytes) bytes queued")
    try await peer.open(streamID: 3, method: "/t/live")
    let done = await peer.eventually { peer.probe.finished == 1 }
    XCTAssertTrue(done, "the live stream finished while the other is stalled")
    XCTAssertLessThan(peer.probe.written, 100_000)
  }

  // MARK: A real socket

  func testAPeerThatSendsButNeverReadsIsDisconnected() async throws {
    // PING ACKs are control frames, outside any budget: a peer that floods PINGs (unrestricted
    // while a stream is open) and reads nothing would have the server buffer ACKs forever.
    let server = try await FramedTestServer(services: [EchoService()])
    let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelOption(.autoRead, value: false)
      .connect(host: "127.0.0.1", port: server.target.port).get()
    var headers = RequestHeaders()
    headers.method = "/bench.v1.EchoService/Bidi"
    var start = ByteBuffer()
    Preface.write(into: &start)
    FrameEncoder.encodeSettings(ConnectionSettings(), into: &start)
    FrameEncoder.encode(.headers(streamID: 1, endStream: false, payload: ByteBuffer(bytes: try headers.serializedBytes() as [UInt8])), into: &start)
    try await client.writeAndFlush(start)
    var pings = ByteBuffer()
    for i in 0..<4096 { FrameEncoder.encode(.ping(ack: false, opaque: UInt64(i)), into: &pings) }
    var sent = 0
    let cap = 32 * 1024 * 1024  // far beyond kernel buffers plus the server's limit
    do {
      while sent < cap, client.isActive {
        try await client.writeAndFlush(pings)
        sent += pings.readableBytes
      }
    } catch {
      // The server closed the connection under our writes.
    }
    XCTAssertLessThan(sent, cap, "the server kept buffering PING ACKs for a peer that reads nothing")
    try? await client.close()
    await server.kill()
  }

  func testTheClientsWritersStopWhenTheServerStopsReading() async throws {
    // The client side of the same rule: a server that grants the largest windows and then
    // reads nothing bounds what the client's request writer gets to queue, and the client
    // still shuts down (its GOAWAY can't leave: it closes after `closeTimeout`).
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(SilentServer()) } }
      .bind(host: "127.0.0.1", port: 0).get()
    let target = FramedTarget(host: "127.0.0.1", port: server.localAddress!.port!)
    let written = NIOLockedValueBox(0)
    let outcome = NIOLockedValueBox<RPCError.Code?>(nil)
    let closed = NIOLockedValueBox(false)
    // In a task, so that a client that can't shut down fails this test instead of hanging it.
    Task {
      try? await withFramedClient([target], configure: { $0.connection.closeTimeout = .milliseconds(500) }) { grpc in
        var options = CallOptions.defaults
        options.timeout = .milliseconds(1500)
        let message = echoRequest(bytes: 16 * 1024)
        do {
          _ = try await Bench_V1_EchoService.Client(wrapping: grpc).clientStream(
            request: StreamingClientRequest { writer in
              for _ in 0..<20_000 {  // 320 MiB if nothing held it back
                try await writer.write(message)
                written.withLockedValue { $0 += 1 }
              }
            }, options: options)
        } catch let error as RPCError {
          outcome.withLockedValue { $0 = error.code }
        }
      }
      closed.withLockedValue { $0 = true }
    }
    let shutDown = await Probe().eventually(.seconds(10)) { closed.withLockedValue { $0 } }
    XCTAssertTrue(shutDown, "the client could not close a connection whose peer reads nothing")
    XCTAssertEqual(outcome.withLockedValue { $0 }, .deadlineExceeded)
    // Kernel socket buffers take several MiB first; the client's own queue is 256 KiB.
    let count = written.withLockedValue { $0 }
    XCTAssertGreaterThan(count, 0)
    XCTAssertLessThan(count, 1000, "the client kept queueing for a server that reads nothing")
    try await server.close()
  }
}

/// Answers the client's preface with its own and SETTINGS granting the largest windows, then
/// never reads again.
final class SilentServer: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  func channelActive(context: ChannelHandlerContext) {
    var settings = ConnectionSettings()
    settings.initialStreamWindow = WireLimits.maxWindow
    settings.initialConnectionWindow = WireLimits.maxWindow
    var out = ByteBuffer()
    Preface.write(into: &out)
    FrameEncoder.encodeSettings(settings, into: &out)
    context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
    context.fireChannelActive()
  }
}

/// A `StreamHandle` that records what the connection tells it.
final class RecordingHandle: StreamHandle {
  private let epochs = NIOLockedValueBox<[UInt64]>([])
  var resumed: [UInt64] { self.epochs.withLockedValue { $0 } }
  var streamID: UInt32 {
    get { 1 }
    set {}
  }
  func sent(_ bytes: Int) -> Int { bytes }
  func fail(_ error: RPCError) {}
  func connectionResumed(epoch: UInt64) { self.epochs.withLockedValue { $0.append(epoch) } }
}

/// What the handlers of `ServerUnderTest` did.
final class WriterProbe: Sendable {
  private let state = NIOLockedValueBox((written: 0, finished: 0, failed: 0))
  var written: Int { self.state.withLockedValue { $0.written } }
  var finished: Int { self.state.withLockedValue { $0.finished } }
  var failed: Int { self.state.withLockedValue { $0.failed } }
  func wrote() { self.state.withLockedValue { $0.written += 1 } }
  func finish() { self.state.withLockedValue { $0.finished += 1 } }
  func fail() { self.state.withLockedValue { $0.failed += 1 } }
}

/// A server connection handler on a `NIOAsyncTestingChannel` (thread-safe, so call tasks can
/// hand it commands), whose calls write `count(method)` 1 KiB messages and then an OK status.
struct ServerUnderTest {
  let channel: NIOAsyncTestingChannel
  let commands: ConnectionCommands
  let probe = WriterProbe()
  let streamWindow: Int

  init(budget: Int, streamWindow: Int = WireLimits.maxWindow, count: @escaping @Sendable (String) -> Int) async throws {
    let channel = NIOAsyncTestingChannel()
    let probe = self.probe
    let callbacks = ServerCallbacks(
      streamHandler: { rpc, context in
        do {
          try await rpc.outbound.write(.metadata([:]))
          for _ in 0..<count("/\(context.descriptor.fullyQualifiedMethod)") {
            try await rpc.outbound.write(.message(FramedBytes(repeating: 7, count: 1024)))
            probe.wrote()
          }
          try await rpc.outbound.write(.status(Status(code: .ok, message: ""), [:]))
          probe.finish()
        } catch {
          probe.fail()
        }
      }, encodings: .all)
    self.commands = try await channel.testingEventLoop.executeInContext {
      var config = FramedConnectionConfig()
      config.maxQueuedBytes = budget
      config.keepaliveInterval = nil
      let commands = ConnectionCommands(eventLoop: channel.eventLoop)
      let handler = ServerConnectionHandler(config: config, commands: commands, status: ConnectionStatus(), callbacks: callbacks)
      try channel.pipeline.syncOperations.addHandler(FrameReader(settings: ConnectionSettings()))
      try channel.pipeline.syncOperations.addHandler(handler)
      return commands
    }
    try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
    self.channel = channel
    self.streamWindow = streamWindow
  }

  func handshake() async throws {
    var settings = ConnectionSettings()
    settings.initialStreamWindow = self.streamWindow
    settings.initialConnectionWindow = WireLimits.maxWindow
    var b = ByteBuffer()
    Preface.write(into: &b)
    FrameEncoder.encodeSettings(settings, into: &b)
    try await self.channel.writeInbound(b)
  }

  func open(streamID: UInt32, method: String) async throws {
    var headers = RequestHeaders()
    headers.method = method
    var b = ByteBuffer()
    FrameEncoder.encode(.headers(streamID: streamID, endStream: true, payload: ByteBuffer(bytes: try headers.serializedBytes() as [UInt8])), into: &b)
    try await self.channel.writeInbound(b)
  }

  func setWritable(_ writable: Bool) async {
    let channel = self.channel
    channel.isWritable = writable
    try? await channel.testingEventLoop.executeInContext { channel.pipeline.fireChannelWritabilityChanged() }
  }

  /// Runs the loop until `condition` holds (at most `limit`; generous for a loaded CI host).
  func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
      await self.channel.testingEventLoop.run()
      if condition() { return true }
      try? await Task.sleep(for: .milliseconds(1))
    }
    return condition()
  }

  /// Runs the loop for a while, so anything that would still happen does.
  func spin(for duration: Duration) async {
    _ = await self.eventually(within: duration) { false }
  }

  /// MESSAGE frames written to the channel so far (consumed).
  func messageFrames() async throws -> Int {
    var all = ByteBuffer()
    while var b = try await self.channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&b) }
    self.bytes.withLockedValue { $0 += all.readableBytesView }
    return RawClient.decode(self.bytes.withLockedValue { $0 }).filter {
      if case .frame(.message) = $0 { return true } else { return false }
    }.count
  }
  private let bytes = NIOLockedValueBox<[UInt8]>([])
}
