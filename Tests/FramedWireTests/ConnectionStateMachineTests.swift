import NIOCore
import WireProtos
import XCTest

@testable import FramedWire

/// Drives the connection state machine event by event and asserts the actions.
final class ConnectionStateMachineTests: XCTestCase {
  let now = NIODeadline.now()

  func handshakenClient(peer: [SettingsEntry] = []) -> ConnectionStateMachine {
    var m = ConnectionStateMachine(role: .client, localSettings: ConnectionSettings())
    _ = m.receive(.preface(version: 1), now: now)
    guard case .ready = m.receive(.frame(.settings(peer)), now: now) else { fatalError("not ready") }
    return m
  }

  func written(_ m: inout ConnectionStateMachine, limit: Int = 1 << 30) -> (frames: [Frame], events: [ConnectionStateMachine.SendEvent]) {
    var buffer = ByteBuffer()
    var events: [ConnectionStateMachine.SendEvent] = []
    m.writePending(into: &buffer, byteLimit: limit, events: &events)
    var decoder = FrameDecoder(
      settings: {
        var s = ConnectionSettings(); s.maxFrameSize = WireLimits.maxFrameSizeCap; return s
      }(), expectPreface: false)
    var frames: [Frame] = []
    while case .frame(let f)? = try! decoder.decode(&buffer) { frames.append(f) }
    return (frames, events)
  }

  func testFirstFrameMustBeSettings() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receive(.preface(version: 1), now: now)
    guard case .connectionError(let e, let goAway?) = m.receive(.frame(.ping(ack: false, opaque: 1)), now: now) else {
      return XCTFail("expected a connection error")
    }
    XCTAssertEqual(e.code, .protocolError)
    guard case .goAway(_, .protocolError, _) = goAway else { return XCTFail("expected GOAWAY") }
  }

  func testStreamIDsAreConsecutiveAndOpenStreamsCounted() {
    var (_, m) = WireTest.handshakenServer()
    guard case .requestHeaders(1, let h, false) = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    else {
      return XCTFail()
    }
    XCTAssertEqual(h.method, "/bench.v1.EchoService/Unary")
    XCTAssertEqual(m.openStreamCount, 1)
    guard case .connectionError(let e, _) = m.receive(.frame(.headers(streamID: 5, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
      return XCTFail("skipped id must be a connection error")
    }
    XCTAssertEqual(e.code, .protocolError)
  }

  func testTooManyStreamsAreRefusedNotProcessed() {
    var settings = ConnectionSettings()
    settings.maxConcurrentStreams = 2
    var (_, m) = WireTest.handshakenServer(settings: settings)
    for id: UInt32 in [1, 3] {
      guard case .requestHeaders = m.receive(.frame(.headers(streamID: id, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
        return XCTFail()
      }
    }
    guard case .write(let frames) = m.receive(.frame(.headers(streamID: 5, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
      return XCTFail()
    }
    XCTAssertEqual(frames, [.rst(streamID: 5, code: .refusedStream)])
    XCTAssertEqual(m.openStreamCount, 2)
  }

  func testUndecodableHeadersIsAStreamErrorOnly() {
    var (_, m) = WireTest.handshakenServer()
    let action = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]))), now: now)
    guard case .write(let frames) = action else { return XCTFail("\(action)") }
    XCTAssertEqual(frames, [.rst(streamID: 1, code: .protocolError)])
    // The connection keeps working.
    guard case .requestHeaders(3, _, _) = m.receive(.frame(.headers(streamID: 3, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
      return XCTFail()
    }
  }

  func testSlowReaderPinsTheSenderAtOneWindow() {
    // The peer (server) grants 64 KiB per stream; we queue 1 MiB and it reads nothing.
    var m = handshakenClient(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = try! m.openStream().get()
    for _ in 0..<16 {
      XCTAssertTrue(m.queue(.message(ByteBuffer(repeating: 7, count: 65_536), compressed: false, endStream: false), streamID: id))
    }
    let (frames, events) = written(&m)
    let sent = events.reduce(0) { if case .sent(_, let b) = $1 { return $0 + b } else { return $0 } }
    XCTAssertEqual(sent, 65_536, "exactly one window leaves, the rest waits")
    XCTAssertEqual(frames.count, 1)
    XCTAssertTrue(written(&m).frames.isEmpty, "nothing more without credit")
    // One WINDOW_UPDATE releases exactly its increment.
    _ = m.receive(.frame(.windowUpdate(streamID: id, increment: 10_000)), now: now)
    let more = written(&m)
    XCTAssertEqual(more.events, [.sent(streamID: id, bytes: 10_000)])
    guard case .message(_, let flags, _) = more.frames.first else { return XCTFail() }
    XCTAssertTrue(flags.contains(.more), "a message split to the credit continues")
  }

  func testMessagesAreSplitAtThePeersMaxFrameSize() {
    var m = handshakenClient(peer: [SettingsEntry(id: 1, value: 16_384)])
    let id = try! m.openStream().get()
    _ = m.queue(.message(ByteBuffer(repeating: 1, count: 40_000), compressed: true, endStream: true), streamID: id)
    let frames = written(&m).frames
    XCTAssertEqual(frames.count, 3)
    let flags = frames.compactMap { f -> FrameFlags? in if case .message(_, let fl, _) = f { return fl } else { return nil } }
    XCTAssertEqual(flags, [[.compressed, .more], [.compressed, .more], [.compressed, .endStream]])
  }

  func testRoundRobinInterleavesStreams() {
    var m = handshakenClient(peer: [SettingsEntry(id: 1, value: 16_384)])
    let a = try! m.openStream().get()
    let b = try! m.openStream().get()
    _ = m.queue(.message(ByteBuffer(repeating: 1, count: 50_000), compressed: false, endStream: false), streamID: a)
    _ = m.queue(.message(ByteBuffer(repeating: 2, count: 100), compressed: false, endStream: false), streamID: b)
    let ids = written(&m).frames.map(\.streamID)
    XCTAssertEqual(Array(ids.prefix(2)), [a, b], "a small message is not stuck behind a big one")
  }

  func testStalledStreamDoesNotBlockConnectionCredit() {
    var settings = ConnectionSettings()
    settings.initialConnectionWindow = 65_536
    var (_, m) = WireTest.handshakenServer(settings: settings)
    _ = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    // Stream 1's reader never consumes, yet 256 KiB (4× the connection window) get in: the
    // connection credit comes back as bytes land in the stream's buffer.
    var connectionUpdates = 0
    for _ in 0..<8 {
      let a = m.receive(.frame(.message(streamID: 1, flags: [], payload: ByteBuffer(repeating: 0, count: 32_768))), now: now)
      guard case .message(1, _, _, _, _, let alsoWrite) = a else { return XCTFail("\(a)") }
      connectionUpdates += alsoWrite.filter { $0.streamID == 0 }.count
    }
    XCTAssertEqual(connectionUpdates, 8)
    // The stream's own 256 KiB window is now spent: one more byte resets only that stream.
    guard case .streamFailed(1, let e, _) = m.receive(.frame(.message(streamID: 1, flags: [], payload: ByteBuffer(repeating: 0, count: 1))), now: now) else {
      return XCTFail("overrun must reset the stream")
    }
    XCTAssertEqual(e.code, .flowControlError)
    guard case .requestHeaders(3, _, _) = m.receive(.frame(.headers(streamID: 3, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
      return XCTFail()
    }
    guard case .message(3, _, _, _, _, _) = m.receive(.frame(.message(streamID: 3, flags: [], payload: ByteBuffer(repeating: 0, count: 10))), now: now) else {
      return XCTFail("other streams are unaffected")
    }
  }

  func testFragmentCreditIsHeldWhileCompleteMessagesWait() {
    var (_, m) = WireTest.handshakenServer()
    _ = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    _ = m.receive(.frame(.message(streamID: 1, flags: [], payload: ByteBuffer(repeating: 0, count: 100))), now: now)
    // A fragment now waits for the reader: no stream WINDOW_UPDATE for it, ever, until consumed.
    for _ in 0..<8 {
      let a = m.receive(.frame(.message(streamID: 1, flags: .more, payload: ByteBuffer(repeating: 0, count: 30_000))), now: now)
      if case .write(let frames) = a { XCTAssertFalse(frames.contains { $0.streamID == 1 }) }
    }
    // Consuming the complete message releases the held credit (240,100 bytes ≥ half window).
    XCTAssertEqual(m.consumed(streamID: 1, credit: 100), .windowUpdate(streamID: 1, increment: 240_100))
  }

  func testOversizedMessageIsRejectedBeforeBuffering() {
    var settings = ConnectionSettings()
    settings.maxMessageSize = 100_000
    var (_, m) = WireTest.handshakenServer(settings: settings)
    _ = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    _ = m.receive(.frame(.message(streamID: 1, flags: .more, payload: ByteBuffer(repeating: 0, count: 60_000))), now: now)
    guard
      case .messageTooLarge(1, let size, _) = m.receive(.frame(.message(streamID: 1, flags: .more, payload: ByteBuffer(repeating: 0, count: 60_000))), now: now)
    else {
      return XCTFail()
    }
    XCTAssertEqual(size, 120_000)
  }

  func testTwoPhaseDrainRefusesLaterStreams() {
    var (_, m) = WireTest.handshakenServer()
    _ = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    let first = m.beginDrain(pingOpaque: 42)
    XCTAssertEqual(first, [.goAway(lastStreamID: WireLimits.maxStreamID, code: .noError, debug: "draining"), .ping(ack: false, opaque: 42)])
    // Streams opened before the final GOAWAY are still accepted (they may have been in flight).
    guard case .requestHeaders(3, _, _) = m.receive(.frame(.headers(streamID: 3, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
      return XCTFail()
    }
    XCTAssertEqual(m.finishDrain(), .goAway(lastStreamID: 3, code: .noError, debug: "draining"))
    guard case .write(let frames) = m.receive(.frame(.headers(streamID: 5, endStream: false, payload: WireTest.requestHeaders())), now: now) else {
      return XCTFail()
    }
    XCTAssertEqual(frames, [.rst(streamID: 5, code: .refusedStream)])
  }

  func testClientGoAwayHandling() {
    var m = handshakenClient()
    let a = try! m.openStream().get()
    let b = try! m.openStream().get()
    guard case .goAway(let last, _, _, let refused) = m.receive(.frame(.goAway(lastStreamID: a, code: .noError, debug: "bye")), now: now) else {
      return XCTFail()
    }
    XCTAssertEqual(last, a)
    XCTAssertEqual(refused, [b], "unprocessed streams fail (UNAVAILABLE, retriable)")
    XCTAssertEqual(m.openStream(), .failure(.goingAway))
    // Raising last_stream_id is a protocol error, and we never answer GOAWAY with GOAWAY.
    guard case .connectionError(let e, let goAway) = m.receive(.frame(.goAway(lastStreamID: b, code: .noError, debug: "")), now: now) else {
      return XCTFail()
    }
    XCTAssertEqual(e.code, .protocolError)
    XCTAssertNil(goAway)
  }

  /// §11.4: a client's GOAWAY changes nothing on the server — HEADERS after it open streams, and
  /// only the server's own final GOAWAY makes it close once idle.
  func testServerKeepsServingAfterAClientGoAway() {
    var (_, m) = WireTest.handshakenServer()
    guard case .goAway(0, .noError, _, let refused) = m.receive(.frame(.goAway(lastStreamID: 0, code: .noError, debug: "")), now: now) else {
      return XCTFail("expected the GOAWAY to be reported")
    }
    XCTAssertEqual(refused, [], "a server has no streams of its own to refuse")
    XCTAssertFalse(m.closesWhenIdle, "the client closes, not the server")
    guard case .requestHeaders(1, _, false) = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    else {
      return XCTFail("HEADERS after a client GOAWAY are not policed")
    }
    _ = m.beginDrain(pingOpaque: 1)
    XCTAssertFalse(m.closesWhenIdle, "not before the final GOAWAY: HEADERS may still be in flight")
    XCTAssertEqual(m.finishDrain(), .goAway(lastStreamID: 1, code: .noError, debug: "draining"))
    XCTAssertTrue(m.closesWhenIdle)
  }

  func testClientClosesWhenIdleAfterEitherGoAway() {
    var received = handshakenClient()
    XCTAssertFalse(received.closesWhenIdle)
    _ = received.receive(.frame(.goAway(lastStreamID: 0, code: .noError, debug: "")), now: now)
    XCTAssertTrue(received.closesWhenIdle)
    var sent = handshakenClient()
    _ = sent.closeGracefully()
    XCTAssertTrue(sent.closesWhenIdle)
  }

  func testPingsAreEchoedAndFloodsEndTheConnection() {
    var (_, m) = WireTest.handshakenServer()
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    XCTAssertEqual(action(m.receive(.frame(.ping(ack: false, opaque: 9)), now: t0)), "write [ping ack 9]")
    _ = m.receive(.frame(.ping(ack: false, opaque: 10)), now: t0 + .seconds(1))
    guard case .connectionError(let e, _) = m.receive(.frame(.ping(ack: false, opaque: 11)), now: t0 + .seconds(2)) else {
      return XCTFail("second strike")
    }
    XCTAssertEqual(e.code, .enhanceYourCalm)
    XCTAssertEqual(e.reason, "too_many_pings")
  }

  func testBusyClientsMayPingFreely() {
    var (_, m) = WireTest.handshakenServer()
    _ = m.receive(.frame(.headers(streamID: 1, endStream: false, payload: WireTest.requestHeaders())), now: now)
    for i in 0..<10 {
      guard case .write = m.receive(.frame(.ping(ack: false, opaque: UInt64(i))), now: now) else { return XCTFail() }
    }
  }

  func action(_ a: Outcome) -> String {
    if case .write(let frames) = a, frames.count == 1, case .ping(true, let o) = frames[0] { return "write [ping ack \(o)]" }
    return "\(a)"
  }
}

final class KeepaliveAndBalancingTests: XCTestCase {
  func testKeepalivePingsWhenIdleAndDeclaresDeath() {
    let t0 = NIODeadline.uptimeNanoseconds(0)
    var k = KeepaliveState(interval: .seconds(30), timeout: .seconds(10), now: t0)
    XCTAssertEqual(k.tick(now: t0 + .seconds(29), nextOpaque: 1), .nothing)
    XCTAssertEqual(k.tick(now: t0 + .seconds(30), nextOpaque: 1), .sendPing(1))
    XCTAssertEqual(k.tick(now: t0 + .seconds(35), nextOpaque: 2), .nothing)
    XCTAssertEqual(k.tick(now: t0 + .seconds(40), nextOpaque: 2), .dead)
  }

  func testKeepaliveAckKeepsTheConnection() {
    let t0 = NIODeadline.uptimeNanoseconds(0)
    var k = KeepaliveState(interval: .seconds(30), timeout: .seconds(10), now: t0)
    XCTAssertEqual(k.tick(now: t0 + .seconds(30), nextOpaque: 7), .sendPing(7))
    k.ackReceived(opaque: 7, at: t0 + .seconds(31))
    XCTAssertEqual(k.tick(now: t0 + .seconds(45), nextOpaque: 8), .nothing)
  }

  func testSettingsRejectOutOfRangeValues() {
    var s = ConnectionSettings()
    XCTAssertThrowsError(try s.apply(id: 1, value: 1000))
    XCTAssertThrowsError(try s.apply(id: 7, value: 4), "identity bit required")
    XCTAssertNoThrow(try s.apply(id: 0x99, value: 1), "unknown ids are ignored")
    XCTAssertNoThrow(try s.apply(id: 4, value: 0))
    XCTAssertEqual(s.maxConcurrentStreams, 0)
  }
}
