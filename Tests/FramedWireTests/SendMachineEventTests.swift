import NIOCore
import WireProtos
import XCTest

@testable import FramedWire

/// Our side of a stream: queueing, the phases it moves through, and what a write pass sends.
final class SendMachineEventTests: XCTestCase {
  typealias M = Machine

  // MARK: Phases

  func testPhaseClosesEachHalfOnce() {
    var p = StreamPhase.open(.pending)
    p.closeLocal()
    XCTAssertEqual(p, .localClosed(.pending))
    p.closeLocal()
    XCTAssertEqual(p, .localClosed(.pending))
    p.closeRemote()
    XCTAssertEqual(p, .closed)
    p.closeRemote()
    XCTAssertEqual(p, .closed)
  }

  func testRemoteThenLocalAlsoEndsClosed() {
    var p = StreamPhase.open(.done)
    p.closeRemote()
    XCTAssertEqual(p, .remoteClosed(.done))
    p.closeLocal()
    XCTAssertEqual(p, .closed)
  }

  func testHeadersExchangeIsKeptAcrossAHalfClose() {
    var p = StreamPhase.open(.pending)
    p.closeRemote()
    p.exchangeHeaders()
    XCTAssertEqual(p, .remoteClosed(.done))
    XCTAssertEqual(p.headers, .done)
  }

  func testClosedStreamHasNoHeadersState() {
    XCTAssertNil(StreamPhase.closed.headers)
    XCTAssertTrue(StreamPhase.closed.isLocalClosed)
    XCTAssertTrue(StreamPhase.closed.isRemoteClosed)
  }

  // MARK: Queueing

  func testQueueingAMessageSchedulesTheStream() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertTrue(m.queue(.message(M.bytes(10), compressed: false, endStream: false), streamID: 1))
    XCTAssertTrue(m.hasPendingSends)
  }

  func testQueueingOnAStreamThatIsGoneFails() {
    var m = M.server()
    XCTAssertFalse(m.queue(.message(M.bytes(1), compressed: false, endStream: false), streamID: 1))
  }

  func testTrailersCloseTheLocalHalf() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertTrue(m.queue(.trailers(M.trailers()), streamID: 1))
    XCTAssertEqual(m.streams[1]?.phase, .localClosed(.pending))
  }

  func testNothingQueuesAfterTrailers() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.queue(.trailers(M.trailers()), streamID: 1)
    XCTAssertFalse(m.queue(.message(M.bytes(1), compressed: false, endStream: false), streamID: 1))
    XCTAssertFalse(m.queue(.trailers(M.trailers()), streamID: 1))
  }

  func testHalfCloseClosesTheLocalHalf() {
    var m = M.client()
    let id = M.call(&m)
    XCTAssertTrue(m.queue(.halfClose, streamID: id))
    XCTAssertEqual(m.streams[id]?.phase, .localClosed(.done))
    XCTAssertFalse(m.queue(.halfClose, streamID: id))
  }

  func testMessageWithEndStreamClosesTheLocalHalf() {
    var m = M.client()
    let id = M.call(&m)
    XCTAssertTrue(m.queue(.message(M.bytes(1), compressed: false, endStream: true), streamID: id))
    XCTAssertEqual(m.streams[id]?.phase, .localClosed(.done))
  }

  func testResponseHeadersAreRecorded() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertTrue(m.sendResponseHeaders(streamID: 1))
    XCTAssertEqual(m.streams[1]?.phase, .open(.done))
  }

  func testResponseHeadersAfterTrailersAreRefused() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.queue(.trailers(M.trailers()), streamID: 1)
    XCTAssertFalse(m.sendResponseHeaders(streamID: 1))
  }

  // MARK: Writing

  func testTrailersEndTheServerStreamOnceWritten() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.queue(.message(M.bytes(3), compressed: false, endStream: false), streamID: 1)
    _ = m.queue(.trailers(M.trailers()), streamID: 1)
    let (frames, events) = M.written(&m)
    XCTAssertEqual(frames.count, 2)
    XCTAssertEqual(events, [.sent(streamID: 1, bytes: 3), .messageDone(streamID: 1), .closed(streamID: 1)])
    XCTAssertNil(m.streams[1])
  }

  func testClientStreamStaysUntilTrailersAfterItsHalfClose() {
    var m = M.client()
    let id = M.call(&m)
    _ = m.queue(.halfClose, streamID: id)
    let (frames, events) = M.written(&m)
    XCTAssertEqual(frames, [.message(streamID: id, flags: [.noMessage, .endStream], payload: ByteBuffer())])
    XCTAssertEqual(events, [])
    XCTAssertEqual(m.streams[id]?.phase, .localClosed(.done))
  }

  func testAPartlyWrittenMessageIsMidMessage() {
    var m = M.client(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = M.call(&m)
    _ = m.queue(.message(M.bytes(100_000), compressed: false, endStream: false), streamID: id)
    _ = M.written(&m)
    XCTAssertTrue(m.isMidMessage(streamID: id))
    _ = m.receiveWindowUpdate(streamID: id, increment: 100_000)
    _ = M.written(&m)
    XCTAssertFalse(m.isMidMessage(streamID: id))
  }

  func testNothingIsMidMessageBeforeItsFirstFragment() {
    var m = M.client(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = M.call(&m)
    _ = m.queue(.message(M.bytes(10), compressed: false, endStream: false), streamID: id)
    XCTAssertFalse(m.isMidMessage(streamID: id))
  }

  func testARemainderKeepsItsFlags() {
    var m = M.client(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = M.call(&m)
    _ = m.queue(.message(M.bytes(70_000), compressed: true, endStream: true), streamID: id)
    _ = M.written(&m)
    _ = m.receiveWindowUpdate(streamID: id, increment: 10_000)
    guard case .message(_, let flags, let payload)? = M.written(&m).frames.first else { return XCTFail() }
    XCTAssertEqual(flags, [.compressed, .endStream])
    XCTAssertEqual(payload.readableBytes, 70_000 - 65_536)
  }

  func testAStreamWithoutCreditWaitsForItsOwnWindowUpdate() {
    var m = M.client(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = M.call(&m)
    _ = m.queue(.message(M.bytes(65_536), compressed: false, endStream: false), streamID: id)
    _ = m.queue(.message(M.bytes(1), compressed: false, endStream: false), streamID: id)
    XCTAssertEqual(M.written(&m).frames.count, 1)
    XCTAssertFalse(m.hasPendingSends, "not scheduled without credit")
    XCTAssertEqual(m.receiveWindowUpdate(streamID: id, increment: 1), .windowOpened)
    XCTAssertTrue(m.hasPendingSends)
  }

  func testTheConnectionWindowStopsEveryStream() {
    var m = M.client(peer: [SettingsEntry(id: 3, value: 65_536)])
    let a = M.call(&m)
    let b = M.call(&m)
    _ = m.queue(.message(M.bytes(65_536), compressed: false, endStream: false), streamID: a)
    _ = m.queue(.message(M.bytes(10), compressed: false, endStream: false), streamID: b)
    let first = M.written(&m)
    XCTAssertEqual(first.events, [.sent(streamID: a, bytes: 65_536), .messageDone(streamID: a)])
    XCTAssertTrue(M.written(&m).frames.isEmpty)
    _ = m.receiveWindowUpdate(streamID: 0, increment: 10)
    XCTAssertEqual(M.written(&m).events, [.sent(streamID: b, bytes: 10), .messageDone(streamID: b)])
  }

  func testEmptyMessagesNeedNoCredit() {
    var m = M.client(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = M.call(&m)
    _ = m.queue(.message(M.bytes(65_536), compressed: false, endStream: false), streamID: id)
    _ = m.queue(.message(M.bytes(0), compressed: false, endStream: false), streamID: id)
    XCTAssertEqual(M.written(&m).frames.count, 2)
  }

  func testTheByteLimitEndsAWritePass() {
    var m = M.server(peer: [SettingsEntry(id: 1, value: 16_384)])
    M.open(&m, 1)
    _ = m.queue(.message(M.bytes(100_000), compressed: false, endStream: false), streamID: 1)
    let first = M.written(&m, limit: 20_000)
    XCTAssertEqual(first.frames.count, 2, "a pass stops once the limit is reached")
    XCTAssertTrue(m.hasPendingSends)
  }

  func testResetStreamReturnsTheRSTOnce() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertEqual(m.resetStream(streamID: 1, code: .cancel), .rst(streamID: 1, code: .cancel))
    XCTAssertNil(m.resetStream(streamID: 1, code: .cancel))
  }

  func testDiscardingQueuedSendsEmptiesTheMachine() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.queue(.message(M.bytes(10), compressed: false, endStream: false), streamID: 1)
    m.discardQueuedSends()
    XCTAssertEqual(m.openStreamCount, 0)
    XCTAssertFalse(m.hasPendingSends)
  }

  func testPendingSendKnowsWhatClosesOurHalf() {
    XCTAssertTrue(PendingSend(.halfClose).closesLocal)
    XCTAssertTrue(PendingSend(.trailers(ByteBuffer())).closesLocal)
    XCTAssertTrue(PendingSend(.message(ByteBuffer(), compressed: false, endStream: true)).closesLocal)
    XCTAssertFalse(PendingSend(.message(ByteBuffer(), compressed: false, endStream: false)).closesLocal)
  }

  func testServerStreamIsDoneOnlyWhenBothHalvesClosedAndNothingQueued() {
    var m = M.server()
    M.open(&m, 1, endStream: true)
    _ = m.queue(.message(M.bytes(3), compressed: false, endStream: false), streamID: 1)
    XCTAssertEqual(m.streams[1]?.isDone, false)
    _ = m.queue(.trailers(M.trailers()), streamID: 1)
    XCTAssertEqual(m.streams[1]?.phase, .closed)
    XCTAssertEqual(m.streams[1]?.isDone, false, "output still queued")
    _ = M.written(&m)
    XCTAssertNil(m.streams[1])
  }
}
