import BenchService
import Foundation
import FramedTransport
import FramedWire
import GRPCCore
import NIOCore
import QuizwireProtos
import XCTest

/// The transport against peers that break the rules or stop answering, over real sockets.
final class MisbehavingPeerTests: XCTestCase {
  func testServerResetsAreSeenByTheClient() async throws {
    let server = try await RawServer { item, out in
      RawServer.handshake(item, &out)
      if case .frame(.headers(let id, _, _)) = item {
        FrameEncoder.encode(.rst(streamID: id, code: id == 1 ? .cancel : .refusedStream), into: &out)
      }
    }
    try await withFramedClient([FramedTarget(host: "127.0.0.1", port: server.port)]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let first = await expectRPCError { _ = try await echo.unary(echoRequest("a")) }
      XCTAssertEqual(first?.code, .cancelled)
      let second = await expectRPCError { _ = try await echo.unary(echoRequest("b")) }
      XCTAssertEqual(second?.code, .unavailable, "REFUSED_STREAM means not processed: UNAVAILABLE")
    }
    await server.close()
  }

  func testKeepaliveDetectsAPeerThatStoppedAnswering() async throws {
    // Completes the handshake, then never answers anything, PINGs included.
    let server = try await RawServer { item, out in RawServer.handshake(item, &out) }
    try await withFramedClient(
      [FramedTarget(host: "127.0.0.1", port: server.port)],
      configure: {
        $0.connection.keepaliveInterval = .milliseconds(100)
        $0.connection.keepaliveTimeout = .milliseconds(200)
      }
    ) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let started = ContinuousClock.now
      let error = await expectRPCError { _ = try await echo.unary(echoRequest("anyone there?")) }
      XCTAssertEqual(error?.code, .unavailable)
      XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
      XCTAssertTrue(error?.message.contains("keepalive") ?? false, error?.message ?? "")
    }
    let pings = server.received.withLockedValue { $0.filter { if case .frame(.ping(false, _)) = $0 { return true } else { return false } } }
    XCTAssertFalse(pings.isEmpty, "the client pinged")
    await server.close()
  }

  func handshaken(_ client: RawClient, extra: (inout ByteBuffer) -> Void) async throws {
    try await client.write { b in
      Preface.write(into: &b)
      FrameEncoder.encodeSettings(ConnectionSettings(), into: &b)
      extra(&b)
    }
  }

  func testServerAnswersAnOversizedRequestWithResourceExhausted() async throws {
    let server = try await FramedTestServer(services: [EchoService()]) { $0.connection.settings.maxMessageSize = 65_536 }
    let client = try await RawClient(port: server.target.port)
    var headers = RequestHeaders()
    headers.method = "/bench.v1.EchoService/Unary"
    try await self.handshaken(client) { b in
      FrameEncoder.encode(.headers(streamID: 1, endStream: false, payload: ByteBuffer(bytes: try! headers.serializedBytes() as [UInt8])), into: &b)
      FrameEncoder.encode(.message(streamID: 1, flags: .more, payload: ByteBuffer(repeating: 0x0A, count: 60_000)), into: &b)
      FrameEncoder.encode(.message(streamID: 1, flags: .endStream, payload: ByteBuffer(repeating: 0x0A, count: 10_000)), into: &b)
    }
    let (items, closed) = try await client.responses(untilClosed: false) { items in
      items.contains { if case .frame(.trailers) = $0 { return true } else { return false } }
    }
    XCTAssertFalse(closed, "a call-level limit does not end the connection")
    guard let trailersPayload = items.compactMap({ i -> ByteBuffer? in if case .frame(.trailers(1, let p)) = i { return p } else { return nil } }).first else {
      return XCTFail("no TRAILERS: \(items)")
    }
    let trailers = try Trailers(serializedBytes: Array(trailersPayload.readableBytesView))
    XCTAssertEqual(trailers.code, 8, "RESOURCE_EXHAUSTED")
    XCTAssertTrue(trailers.message.contains("MAX_MESSAGE_SIZE") && trailers.message.contains("65536"), trailers.message)
    await client.close()
    try await server.drain()
  }

  func testUnsupportedVersionIsRefusedWithAReason() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    let client = try await RawClient(port: server.target.port)
    try await client.write { b in Preface.write(version: 2, into: &b) }
    let (items, closed) = try await client.responses()
    XCTAssertTrue(closed)
    XCTAssertEqual(items.first, .preface(version: 1), "the server says which version it speaks")
    guard case .frame(.goAway(0, .unsupportedVersion, let debug))? = items.dropFirst().first else {
      return XCTFail("expected GOAWAY(UNSUPPORTED_VERSION): \(items)")
    }
    XCTAssertTrue(debug.hasSuffix("supported versions: 1"), debug)
    try await server.drain()
  }

  func testGarbageClosesOnlyThatConnection() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    try await withFramedClient([server.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      _ = try await echo.unary(echoRequest("before"))
      let bad = try await RawClient(port: server.target.port)
      try await self.handshaken(bad) { b in b.writeBytes([0, 0, 0, 4, 0x42, 0, 0, 0, 0, 0, 1, 2, 3, 4]) }  // unknown type 0x42
      let (items, closed) = try await bad.responses()
      XCTAssertTrue(closed)
      guard case .frame(.goAway(_, .protocolError, let debug))? = items.last else { return XCTFail("\(items)") }
      XCTAssertTrue(debug.contains("0x42"), debug)
      // The well-behaved connection never noticed.
      let after = try await echo.unary(echoRequest("after"))
      XCTAssertEqual(after.payload, Data("after".utf8))
    }
    try await server.drain()
  }
}
