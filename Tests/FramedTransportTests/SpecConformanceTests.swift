import BenchService
import Foundation
import FramedTransport
import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import QuizwireProtos
import WireProtos
import XCTest

/// Points where docs/protocol.md and the server once disagreed (prefaces, silent peers, client
/// GOAWAY, drain timing, response encodings), checked byte by byte from raw-socket peers.
final class SpecConformanceTests: XCTestCase {
  /// §2.3, §11.5, §12.4 row 1: a wrong magic gets the server's preface, then GOAWAY(0,
  /// PROTOCOL_ERROR) instead of SETTINGS, then the close — so the peer can read why.
  func testWrongMagicIsAnsweredWithPrefaceThenGoAway() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    let client = try await RawClient(port: server.target.port)
    try await client.write { $0.writeString("PRI * HT") }  // an HTTP/2 client
    let (items, closed) = try await client.responses()
    XCTAssertTrue(closed)
    XCTAssertEqual(items.count, 2, "preface and GOAWAY, no SETTINGS: \(items)")
    XCTAssertEqual(items.first, .preface(version: 1))
    guard case .frame(.goAway(0, .protocolError, let debug))? = items.dropFirst().first else {
      return XCTFail("expected GOAWAY(0, PROTOCOL_ERROR): \(items)")
    }
    XCTAssertTrue(debug.contains("preface"), debug)
    try await server.drain()
  }

  /// §2.3 step 6, §12.4 row 3: a silent peer gets preface + GOAWAY(0, SETTINGS_TIMEOUT); one that
  /// sent only its preface already has the server's preface and SETTINGS, then the GOAWAY.
  func testSilentPeersGetAPrefaceThenSettingsTimeout() async throws {
    let server = try await FramedTestServer(services: [EchoService()]) { $0.connection.handshakeTimeout = .milliseconds(300) }
    let silent = try await RawClient(port: server.target.port)
    let prefaceOnly = try await RawClient(port: server.target.port)
    try await prefaceOnly.write { Preface.write(into: &$0) }
    let started = ContinuousClock.now
    let (items, closed) = try await silent.responses()
    XCTAssertTrue(closed)
    XCTAssertGreaterThan(ContinuousClock.now - started, .milliseconds(200), "not before the timeout")
    XCTAssertEqual(items.count, 2, "\(items)")
    XCTAssertEqual(items.first, .preface(version: 1))
    guard case .frame(.goAway(0, .settingsTimeout, _))? = items.dropFirst().first else {
      return XCTFail("expected GOAWAY(0, SETTINGS_TIMEOUT): \(items)")
    }

    let (other, otherClosed) = try await prefaceOnly.responses()
    XCTAssertTrue(otherClosed)
    XCTAssertEqual(other.count, 3, "\(other)")
    XCTAssertEqual(other.first, .preface(version: 1))
    guard case .frame(.settings)? = other.dropFirst().first, case .frame(.goAway(0, .settingsTimeout, _))? = other.last else {
      return XCTFail("expected preface, SETTINGS, GOAWAY(0, SETTINGS_TIMEOUT): \(other)")
    }
    try await server.drain()
  }

  /// §11.4: a client's GOAWAY changes nothing else — HEADERS in the same write are still answered,
  /// and the server leaves the closing to the client.
  func testClientGoAwayFollowedByHeadersInOneWriteIsAnswered() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    let client = try await RawClient(port: server.target.port)
    try await client.write { b in
      Preface.write(into: &b)
      FrameEncoder.encodeSettings(ConnectionSettings(), into: &b)
      FrameEncoder.encode(.goAway(lastStreamID: 0, code: .noError, debug: "client closing"), into: &b)
      Self.unary(streamID: 1, payload: "hi", into: &b)
    }
    let (items, closed) = try await client.responses(untilClosed: false) { items in
      items.contains { if case .frame(.trailers) = $0 { return true } else { return false } }
    }
    XCTAssertFalse(closed, "the server does not close on a client's GOAWAY")
    let reply = items.compactMap { i -> Bench_V1_EchoResponse? in
      guard case .frame(.message(1, _, let p)) = i else { return nil }
      return try? Bench_V1_EchoResponse(serializedBytes: Array(p.readableBytesView))
    }
    XCTAssertEqual(reply.first?.payload, Data("hi".utf8), "\(items)")
    XCTAssertEqual(try Self.trailers(items, streamID: 1)?.code, 0)
    await client.close()
    try await server.drain()
  }

  /// §11.2 step 4: the grace period runs from each connection's final GOAWAY, not from the
  /// start of the drain; when it ends, open streams get TRAILERS(UNAVAILABLE), then the close.
  func testDrainGraceIsCountedFromTheFinalGoAway() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)]) {
      $0.connection.drainPingTimeout = .milliseconds(600)
      $0.connection.drainGrace = .milliseconds(1200)
    }
    // A raw client never answers the drain PING, so the final GOAWAY waits the full 600 ms.
    let client = try await RawClient(port: server.target.port)
    try await client.write { b in
      Preface.write(into: &b)
      FrameEncoder.encodeSettings(ConnectionSettings(), into: &b)
      Self.unary(streamID: 1, payload: "sleep:5000", into: &b)
    }
    let called = await probe.eventually { probe.callCount == 1 }
    XCTAssertTrue(called)
    let drained = Task { try await server.drain() }
    var finalGoAwayAt: ContinuousClock.Instant?
    var closedAt: ContinuousClock.Instant?
    let deadline = ContinuousClock.now + .seconds(6)
    while closedAt == nil, ContinuousClock.now < deadline {
      let items = RawClient.decode(client.bytes.withLockedValue { $0 })
      if finalGoAwayAt == nil, items.contains(where: { if case .frame(.goAway(1, .noError, _)) = $0 { return true } else { return false } }) {
        finalGoAwayAt = .now
      }
      if !client.channel.isActive { closedAt = .now }
      try await Task.sleep(for: .milliseconds(5))
    }
    // Bounded: a drain that never ends must fail this test, not hang the suite (awaiting a
    // task's value can't be cancelled, so poll for its end instead).
    let ended = NIOLockedValueBox(false)
    Task {
      _ = try? await drained.value
      ended.withLockedValue { $0 = true }
    }
    let drainDeadline = ContinuousClock.now + .seconds(15)
    while !ended.withLockedValue({ $0 }), ContinuousClock.now < drainDeadline { try await Task.sleep(for: .milliseconds(10)) }
    let drainEnded = ended.withLockedValue { $0 }
    XCTAssertTrue(drainEnded, "the server's drain did not end within 15 s")
    let final = try XCTUnwrap(finalGoAwayAt, "no final GOAWAY(1)")
    let closed = try XCTUnwrap(closedAt, "the server never closed")
    XCTAssertGreaterThanOrEqual(closed - final, .milliseconds(1000), "the whole grace after the final GOAWAY")
    XCTAssertLessThan(closed - final, .seconds(3))

    let items = RawClient.decode(client.bytes.withLockedValue { $0 })
    let trailers = try XCTUnwrap(try Self.trailers(items, streamID: 1), "no TRAILERS before the close: \(items)")
    XCTAssertEqual(trailers.code, 14, "UNAVAILABLE")
    let cancelled = await probe.eventually { probe.cancelCount == 1 }
    XCTAssertTrue(cancelled, "the handler is cancelled")
  }

  /// §11.2: a drain that starts before the handshake finished refuses the connection readably:
  /// preface, GOAWAY(0, NO_ERROR), close — not a GOAWAY where the peer expects a preface.
  func testDrainBeforeTheHandshakeAnswersWithPrefaceThenGoAway() async throws {
    let server = try await FramedTestServer(services: [EchoService()])
    let client = try await RawClient(port: server.target.port)
    let registered = await Probe().eventually { server.transport.connectionCount == 1 }
    XCTAssertTrue(registered)
    let drained = Task { try await server.drain() }
    let (items, closed) = try await client.responses()
    XCTAssertTrue(closed, "no streams can exist yet: the server closes at once")
    XCTAssertEqual(items.count, 2, "\(items)")
    XCTAssertEqual(items.first, .preface(version: 1))
    guard case .frame(.goAway(0, .noError, _))? = items.dropFirst().first else { return XCTFail("expected GOAWAY(0, NO_ERROR): \(items)") }
    try await drained.value
  }

  /// §7.3: a response encoding the client did not list in its ACCEPT_ENCODINGS fails the call
  /// INTERNAL and resets the stream, even if the messages then come uncompressed.
  func testClientRejectsAResponseEncodingItDidNotAccept() async throws {
    let server = try await RawServer { item, out in
      RawServer.handshake(item, &out)
      guard case .frame(.headers(let id, _, _)) = item else { return }
      var headers = ResponseHeaders()
      headers.messageEncoding = "gzip"
      var reply = Bench_V1_EchoResponse()
      reply.payload = Data("hi".utf8)
      FrameEncoder.encode(.headers(streamID: id, endStream: false, payload: ByteBuffer(bytes: try! headers.serializedBytes() as [UInt8])), into: &out)
      FrameEncoder.encode(.message(streamID: id, flags: [], payload: ByteBuffer(bytes: try! reply.serializedBytes() as [UInt8])), into: &out)
      FrameEncoder.encode(.trailers(streamID: id, payload: ByteBuffer()), into: &out)
    }
    try await withFramedClient(
      [FramedTarget(host: "127.0.0.1", port: server.port)],
      configure: { $0.connection.settings.acceptEncodings = .identity }
    ) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      let error = await expectRPCError { _ = try await echo.unary(echoRequest("hi")) }
      XCTAssertEqual(error?.code, .internalError)
      XCTAssertTrue(error?.message.contains("gzip") ?? false, error?.message ?? "")
    }
    let reset = await Probe().eventually {
      server.received.withLockedValue { $0.contains(.frame(.rst(streamID: 1, code: .cancel))) }
    }
    XCTAssertTrue(reset, "the client sends RST(CANCEL)")
    await server.close()
  }

  // MARK: - Helpers

  /// HEADERS and one END_STREAM MESSAGE of a unary echo call.
  static func unary(streamID: UInt32, payload: String, into b: inout ByteBuffer) {
    var headers = RequestHeaders()
    headers.method = "/bench.v1.EchoService/Unary"
    let request: [UInt8] = try! echoRequest(payload).serializedBytes()
    FrameEncoder.encode(.headers(streamID: streamID, endStream: false, payload: ByteBuffer(bytes: try! headers.serializedBytes() as [UInt8])), into: &b)
    FrameEncoder.encode(.message(streamID: streamID, flags: .endStream, payload: ByteBuffer(bytes: request)), into: &b)
  }

  static func trailers(_ items: [DecodedItem], streamID: UInt32) throws -> Trailers? {
    for case .frame(.trailers(streamID, let p)) in items { return try Trailers(serializedBytes: Array(p.readableBytesView)) }
    return nil
  }
}
