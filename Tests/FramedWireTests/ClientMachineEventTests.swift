import NIOCore
import WireProtos
import XCTest

@testable import FramedWire

/// The client's state machine, one event at a time.
final class ClientMachineEventTests: XCTestCase {
  typealias M = Machine

  // MARK: Handshake

  func testClientAcceptsGoAwayInPlaceOfSettings() {
    var m = ConnectionStateMachine(role: .client, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    XCTAssertEqual(
      m.receiveGoAway(lastStreamID: 0, code: .unsupportedVersion, debug: "supported versions: 1"),
      .goingAway(lastStreamID: 0, code: .unsupportedVersion, debug: "supported versions: 1", refusedStreams: []))
    XCTAssertEqual(m.goAwayReceived, 0)
  }

  func testClientRejectsOtherFramesBeforeSettings() {
    var m = ConnectionStateMachine(role: .client, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    XCTAssertNotNil(m.receiveHeaders(streamID: 1, endStream: false, payload: M.response()).connectionFailure)
  }

  func testPeerSettingsLimitNewStreams() {
    var m = M.client(peer: [SettingsEntry(id: 4, value: 1)])
    XCTAssertNotNil(try? m.openStream().get())
    XCTAssertEqual(m.openStream(), .failure(.tooManyStreams(limit: 1)))
  }

  // MARK: Opening

  func testStreamIdsAreOddAndConsecutive() {
    var m = M.client()
    XCTAssertEqual(m.openStream(), .success(1))
    XCTAssertEqual(m.openStream(), .success(3))
    XCTAssertEqual(m.openStream(), .success(5))
  }

  func testOpenWithEndStreamClosesTheLocalHalf() {
    var m = M.client()
    let id = try! m.openStream(endStream: true).get()
    XCTAssertEqual(m.streams[id]?.phase, .localClosed(.pending))
  }

  func testNoNewStreamsAfterAGoAway() {
    var m = M.client()
    _ = m.receiveGoAway(lastStreamID: 0, code: .noError, debug: "")
    XCTAssertEqual(m.openStream(), .failure(.goingAway))
  }

  func testNoNewStreamsAfterOurOwnGoAway() {
    var m = M.client()
    _ = m.closeGracefully()
    XCTAssertEqual(m.openStream(), .failure(.goingAway))
  }

  func testStreamIdsRunOut() {
    var m = M.client()
    m.highestStreamID = WireLimits.maxStreamID
    XCTAssertEqual(m.openStream(), .failure(.streamIDsExhausted))
  }

  // MARK: Response HEADERS

  func testResponseHeadersAreDelivered() {
    var m = M.client()
    let id = try! m.openStream().get()
    guard case .response(id, let h) = m.receiveHeaders(streamID: id, endStream: false, payload: M.response()) else { return XCTFail() }
    XCTAssertEqual(h.messageEncoding, "identity")
    XCTAssertEqual(m.streams[id]?.phase, .open(.done))
  }

  func testSecondResponseHeadersFailTheStream() {
    var m = M.client()
    let id = M.call(&m)
    guard case .streamError(let f) = m.receiveHeaders(streamID: id, endStream: false, payload: M.response()) else { return XCTFail() }
    XCTAssertEqual(f.error.reason, "second response HEADERS")
    XCTAssertNil(m.streams[id])
  }

  func testResponseHeadersWithEndStreamAreAProtocolError() {
    var m = M.client()
    let id = try! m.openStream().get()
    XCTAssertEqual(m.receiveHeaders(streamID: id, endStream: true, payload: M.response()).connectionFailure?.error.reason, "END_STREAM on server HEADERS")
  }

  func testResponseHeadersOnANeverOpenedStreamAreAProtocolError() {
    var m = M.client()
    XCTAssertNotNil(m.receiveHeaders(streamID: 1, endStream: false, payload: M.response()).connectionFailure)
  }

  func testResponseHeadersForAStreamThatIsGoneAreIgnored() {
    var m = M.client()
    let id = try! m.openStream().get()
    _ = m.resetStream(streamID: id, code: .cancel)
    XCTAssertEqual(m.receiveHeaders(streamID: id, endStream: false, payload: M.response()), .ignored)
  }

  func testUndecodableResponseHeadersFailTheStream() {
    var m = M.client()
    let id = try! m.openStream().get()
    guard case .streamError(let f) = m.receiveHeaders(streamID: id, endStream: false, payload: M.bytes(4, 0xFF)) else { return XCTFail() }
    XCTAssertEqual(f.write, [.rst(streamID: id, code: .protocolError)])
  }

  // MARK: Response MESSAGE

  func testMessageBeforeResponseHeadersFailsTheStream() {
    var m = M.client()
    let id = try! m.openStream().get()
    XCTAssertEqual(m.receiveMessage(streamID: id, flags: [], payload: M.bytes(1)).streamFailure?.error.reason, "MESSAGE before response HEADERS")
  }

  func testServerMessageWithEndStreamIsAProtocolError() {
    var m = M.client()
    let id = M.call(&m)
    XCTAssertNotNil(m.receiveMessage(streamID: id, flags: .endStream, payload: M.bytes(1)).connectionFailure)
  }

  func testServerMessageWithNoMessageIsAProtocolError() {
    var m = M.client()
    let id = M.call(&m)
    XCTAssertNotNil(m.receiveMessage(streamID: id, flags: .noMessage, payload: M.bytes(0)).connectionFailure)
  }

  func testResponseMessageIsDelivered() {
    var m = M.client()
    let id = M.call(&m)
    XCTAssertEqual(
      m.receiveMessage(streamID: id, flags: [], payload: M.bytes(5)),
      .message(.init(streamID: id, bytes: M.bytes(5), compressed: false, credit: 5, endStream: false), write: []))
  }

  func testOversizedResponseResetsTheStreamAtOnce() {
    var local = ConnectionSettings()
    local.maxMessageSize = 1024
    var m = M.client(local)
    let id = M.call(&m)
    XCTAssertEqual(
      m.receiveMessage(streamID: id, flags: .more, payload: M.bytes(2000)), .tooLarge(streamID: id, size: 2000, write: [.rst(streamID: id, code: .cancel)]))
    XCTAssertNil(m.streams[id])
  }

  // MARK: TRAILERS

  func testTrailersEndTheCall() {
    var m = M.client()
    let id = M.call(&m)
    var expected = Trailers()
    expected.code = 5
    expected.message = "not found"
    XCTAssertEqual(m.receiveTrailers(streamID: id, payload: M.trailers(code: 5, message: "not found")), .trailers(streamID: id, expected))
    XCTAssertNil(m.streams[id])
  }

  func testTrailersOnlyWithoutResponseHeadersEndTheCall() {
    var m = M.client()
    let id = try! m.openStream().get()
    guard case .trailers(id, let t) = m.receiveTrailers(streamID: id, payload: M.trailers(code: 14)) else { return XCTFail() }
    XCTAssertEqual(t.code, 14)
  }

  func testTrailersMidMessageEndTheCallInternal() {
    var m = M.client()
    let id = M.call(&m)
    _ = m.receiveMessage(streamID: id, flags: .more, payload: M.bytes(3))
    guard case .trailers(id, let t) = m.receiveTrailers(streamID: id, payload: M.trailers()) else { return XCTFail() }
    XCTAssertEqual(t.code, WireStatus.internalError)
    XCTAssertEqual(t.message, "TRAILERS arrived in the middle of a response message")
  }

  func testUndecodableTrailersEndTheCallInternal() {
    var m = M.client()
    let id = M.call(&m)
    guard case .trailers(id, let t) = m.receiveTrailers(streamID: id, payload: M.bytes(3, 0xFF)) else { return XCTFail() }
    XCTAssertEqual(t.code, WireStatus.internalError)
  }

  func testTrailersOnIdleStreamAreAProtocolError() {
    var m = M.client()
    guard case .connectionError = m.receiveTrailers(streamID: 1, payload: M.trailers()) else { return XCTFail() }
  }

  func testTrailersForAStreamThatIsGoneAreIgnored() {
    var m = M.client()
    let id = M.call(&m)
    _ = m.resetStream(streamID: id, code: .cancel)
    XCTAssertEqual(m.receiveTrailers(streamID: id, payload: M.trailers()), .ignored)
  }

  func testTrailersDropQueuedRequestOutput() {
    var m = M.client(peer: [SettingsEntry(id: 2, value: 65_536)])
    let id = M.call(&m)
    _ = m.queue(.message(M.bytes(100_000), compressed: false, endStream: false), streamID: id)
    _ = M.written(&m)
    _ = m.receiveTrailers(streamID: id, payload: M.trailers())
    XCTAssertEqual(m.receiveWindowUpdate(streamID: id, increment: 100_000), .ignored)
    XCTAssertTrue(M.written(&m).frames.isEmpty)
  }

  // MARK: GOAWAY

  func testGoAwayRefusesStreamsAboveTheLast() {
    var m = M.client()
    let a = M.call(&m)
    let b = M.call(&m)
    let c = M.call(&m)
    XCTAssertEqual(
      m.receiveGoAway(lastStreamID: a, code: .noError, debug: "d"), .goingAway(lastStreamID: a, code: .noError, debug: "d", refusedStreams: [b, c]))
    XCTAssertNotNil(m.streams[a])
    XCTAssertNil(m.streams[b])
    XCTAssertTrue(m.closesWhenIdle)
  }

  func testGoAwayMayLowerTheLastStream() {
    var m = M.client()
    let a = M.call(&m)
    let b = M.call(&m)
    _ = m.receiveGoAway(lastStreamID: WireLimits.maxStreamID, code: .noError, debug: "")
    XCTAssertEqual(m.receiveGoAway(lastStreamID: a, code: .noError, debug: ""), .goingAway(lastStreamID: a, code: .noError, debug: "", refusedStreams: [b]))
  }

  func testClientNeverAnswersGoAwayWithGoAway() {
    var m = M.client()
    _ = m.receiveGoAway(lastStreamID: 0, code: .noError, debug: "")
    guard case .connectionError(let f) = m.receiveGoAway(lastStreamID: 5, code: .noError, debug: "") else { return XCTFail() }
    XCTAssertNil(f.goAway)
  }

  func testClientConnectionErrorGoAwayNamesStreamZero() {
    var m = M.client()
    _ = M.call(&m)
    let f = m.connectionError(ConnectionError(.protocolError, "x"))
    XCTAssertEqual(f.goAway, .goAway(lastStreamID: 0, code: .protocolError, debug: "x"))
  }

  func testClosingGracefullySendsGoAwayZero() {
    var m = M.client()
    XCTAssertEqual(m.closeGracefully(), .goAway(lastStreamID: 0, code: .noError, debug: "client closing"))
    XCTAssertEqual(m.localGoAway, .sent(lastStreamID: 0))
    XCTAssertTrue(m.closesWhenIdle)
  }

  func testClientAnswersPingsWithoutAPolicy() {
    var m = M.client()
    for i in 0..<10 { XCTAssertEqual(m.receivePing(ack: false, opaque: UInt64(i), now: M.now), .reply(.ping(ack: true, opaque: UInt64(i)))) }
  }
}
