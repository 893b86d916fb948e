import NIOCore
import WireProtos
import XCTest

@testable import FramedWire

/// The server's state machine, one event at a time: each test sets up a state, feeds one event
/// and asserts that event's result and the state after it.
final class ServerMachineEventTests: XCTestCase {
  typealias M = Machine

  // MARK: Handshake

  func testFreshMachineAwaitsThePreface() {
    let m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    XCTAssertEqual(m.handshake, .awaitingPreface)
    XCTAssertFalse(m.peerPrefaceReceived)
    XCTAssertFalse(m.peerSettingsReceived)
  }

  func testPrefaceMovesToAwaitingSettings() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    XCTAssertEqual(m.receivePreface(), .accepted)
    XCTAssertEqual(m.handshake, .awaitingSettings)
  }

  func testSecondPrefaceIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    guard case .connectionError(let f) = m.receivePreface() else { return XCTFail() }
    XCTAssertEqual(f.error.code, .protocolError)
    XCTAssertEqual(M.goAwayCode(f), .protocolError)
  }

  func testSettingsCompleteTheHandshake() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    XCTAssertEqual(m.receiveSettings([SettingsEntry(id: 4, value: 7)]), .ready)
    XCTAssertEqual(m.handshake, .complete)
    XCTAssertEqual(m.peerSettings.maxConcurrentStreams, 7)
  }

  func testSettingsTwiceIsAProtocolError() {
    var m = M.server()
    guard case .connectionError(let f) = m.receiveSettings([]) else { return XCTFail() }
    XCTAssertEqual(f.error.reason, "SETTINGS sent twice")
  }

  func testSettingsOutOfRangeIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    guard case .connectionError(let f) = m.receiveSettings([SettingsEntry(id: 1, value: 100)]) else { return XCTFail() }
    XCTAssertEqual(f.error.code, .protocolError)
    XCTAssertEqual(m.handshake, .awaitingSettings)
  }

  func testPeerConnectionWindowBecomesOurSendCredit() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    _ = m.receiveSettings([SettingsEntry(id: 3, value: 100_000)])
    XCTAssertEqual(m.connectionSendWindow, 100_000)
  }

  func testHeadersBeforeSettingsIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    let f = m.receiveHeaders(streamID: 1, endStream: false, payload: M.request()).connectionFailure
    XCTAssertEqual(f?.error.reason, "first frame must be SETTINGS, got HEADERS")
  }

  func testPingBeforeSettingsIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    guard case .connectionError(let f) = m.receivePing(ack: false, opaque: 1, now: M.now) else { return XCTFail() }
    XCTAssertEqual(f.error.code, .protocolError)
  }

  func testGoAwayBeforeSettingsIsAProtocolErrorOnTheServer() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    guard case .connectionError = m.receiveGoAway(lastStreamID: 0, code: .noError, debug: "") else { return XCTFail() }
  }

  func testWindowUpdateBeforeSettingsIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    guard case .connectionError = m.receiveWindowUpdate(streamID: 0, increment: 1) else { return XCTFail() }
  }

  func testMessageBeforeSettingsIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    XCTAssertNotNil(m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(1)).connectionFailure)
  }

  func testResetBeforeSettingsIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    guard case .connectionError = m.receiveReset(streamID: 1, code: .cancel) else { return XCTFail() }
  }

  func testExtensionBeforeSettingsIsAProtocolError() {
    var m = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    _ = m.receivePreface()
    XCTAssertNotNil(m.receiveExtension())
  }

  func testExtensionAfterSettingsIsIgnored() {
    var m = M.server()
    XCTAssertNil(m.receiveExtension())
  }

  // MARK: PING

  func testPingIsAnsweredWithItsOpaque() {
    var m = M.server()
    XCTAssertEqual(m.receivePing(ack: false, opaque: 42, now: M.now), .reply(.ping(ack: true, opaque: 42)))
  }

  func testPingAckIsReported() {
    var m = M.server()
    XCTAssertEqual(m.receivePing(ack: true, opaque: 9, now: M.now), .acknowledged(opaque: 9))
  }

  func testIdlePingsTooOftenEndTheConnection() {
    var m = M.server()
    XCTAssertEqual(m.receivePing(ack: false, opaque: 1, now: M.now), .reply(.ping(ack: true, opaque: 1)))
    XCTAssertEqual(m.receivePing(ack: false, opaque: 2, now: M.now + .seconds(1)), .reply(.ping(ack: true, opaque: 2)))
    guard case .connectionError(let f) = m.receivePing(ack: false, opaque: 3, now: M.now + .seconds(2)) else { return XCTFail() }
    XCTAssertEqual(f.error.reason, "too_many_pings")
    XCTAssertEqual(M.goAwayCode(f), .enhanceYourCalm)
  }

  func testIdlePingsTenSecondsApartAreFine() {
    var m = M.server()
    for i in 0..<5 {
      XCTAssertEqual(m.receivePing(ack: false, opaque: UInt64(i), now: M.now + .seconds(Int64(i * 10))), .reply(.ping(ack: true, opaque: UInt64(i))))
    }
  }

  func testPingsWithAnOpenStreamAreUnrestricted() {
    var m = M.server()
    M.open(&m, 1)
    for i in 0..<20 {
      XCTAssertEqual(m.receivePing(ack: false, opaque: UInt64(i), now: M.now), .reply(.ping(ack: true, opaque: UInt64(i))))
    }
  }

  func testStreamActivityClearsPingStrikes() {
    var m = M.server()
    _ = m.receivePing(ack: false, opaque: 1, now: M.now)
    _ = m.receivePing(ack: false, opaque: 2, now: M.now)
    XCTAssertEqual(m.pingPolicy.strikes, 1)
    M.open(&m, 1, endStream: true)
    XCTAssertEqual(m.pingPolicy.strikes, 0)
  }

  // MARK: HEADERS

  func testRequestHeadersOpenAStream() {
    var m = M.server()
    var expected = RequestHeaders()
    expected.method = "/svc/Method"
    XCTAssertEqual(m.receiveHeaders(streamID: 1, endStream: false, payload: M.request()), .request(streamID: 1, expected, endStream: false))
    XCTAssertEqual(m.streams[1]?.phase, .open(.pending))
    XCTAssertEqual(m.highestStreamID, 1)
  }

  func testRequestHeadersWithEndStreamCloseTheRemoteHalf() {
    var m = M.server()
    M.open(&m, 1, endStream: true)
    XCTAssertEqual(m.streams[1]?.phase, .remoteClosed(.pending))
  }

  func testEvenStreamIdIsAProtocolError() {
    var m = M.server()
    XCTAssertEqual(m.receiveHeaders(streamID: 2, endStream: false, payload: M.request()).connectionFailure?.error.code, .protocolError)
  }

  func testSkippedStreamIdIsAProtocolError() {
    var m = M.server()
    let f = m.receiveHeaders(streamID: 3, endStream: false, payload: M.request()).connectionFailure
    XCTAssertEqual(f?.error.reason, "HEADERS on stream 3; the next stream id must be 1")
  }

  func testReusedStreamIdIsAProtocolError() {
    var m = M.server()
    M.open(&m, 1, endStream: true)
    XCTAssertNotNil(m.receiveHeaders(streamID: 1, endStream: false, payload: M.request()).connectionFailure)
  }

  func testConnectionErrorNamesTheHighestStreamInItsGoAway() {
    var m = M.server()
    M.open(&m, 1)
    M.open(&m, 3)
    let f = m.receiveHeaders(streamID: 9, endStream: false, payload: M.request()).connectionFailure
    XCTAssertEqual(f?.goAway, .goAway(lastStreamID: 3, code: .protocolError, debug: "HEADERS on stream 9; the next stream id must be 5"))
    XCTAssertEqual(m.localGoAway, .sent(lastStreamID: 3))
  }

  func testStreamsBeyondTheLimitAreRefused() {
    var local = ConnectionSettings()
    local.maxConcurrentStreams = 2
    var m = M.server(local)
    M.open(&m, 1)
    M.open(&m, 3)
    XCTAssertEqual(m.receiveHeaders(streamID: 5, endStream: false, payload: M.request()), .refused(.rst(streamID: 5, code: .refusedStream)))
    XCTAssertEqual(m.openStreamCount, 2)
    XCTAssertEqual(m.highestStreamID, 5, "the refused id is used up")
  }

  func testUndecodableRequestHeadersResetTheStream() {
    var m = M.server()
    XCTAssertEqual(m.receiveHeaders(streamID: 1, endStream: false, payload: M.bytes(5, 0xFF)), .refused(.rst(streamID: 1, code: .protocolError)))
    XCTAssertEqual(m.openStreamCount, 0)
  }

  func testHeadersDuringDrainPhaseOneAreAdmitted() {
    var m = M.server()
    _ = m.beginDrain(pingOpaque: 1)
    guard case .request = m.receiveHeaders(streamID: 1, endStream: false, payload: M.request()) else { return XCTFail() }
  }

  func testHeadersAboveTheFinalGoAwayAreRefused() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.beginDrain(pingOpaque: 1)
    _ = m.finishDrain()
    XCTAssertEqual(m.receiveHeaders(streamID: 3, endStream: false, payload: M.request()), .refused(.rst(streamID: 3, code: .refusedStream)))
  }

  // MARK: MESSAGE

  func testWholeMessageIsDelivered() {
    var m = M.server()
    M.open(&m, 1)
    let result = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(10))
    XCTAssertEqual(
      result, .message(.init(streamID: 1, bytes: M.bytes(10), compressed: false, credit: 10, endStream: false), write: []))
  }

  func testCompressedFlagIsCarried() {
    var m = M.server()
    M.open(&m, 1)
    guard case .message(let msg, _) = m.receiveMessage(streamID: 1, flags: .compressed, payload: M.bytes(3)) else { return XCTFail() }
    XCTAssertTrue(msg.compressed)
  }

  func testMessageWithEndStreamClosesTheRemoteHalf() {
    var m = M.server()
    M.open(&m, 1)
    guard case .message(let msg, _) = m.receiveMessage(streamID: 1, flags: .endStream, payload: M.bytes(3)) else { return XCTFail() }
    XCTAssertTrue(msg.endStream)
    XCTAssertEqual(m.streams[1]?.phase, .remoteClosed(.pending))
  }

  func testFragmentsAreReassembled() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(4, 1)), .buffered(write: []))
    guard case .message(let msg, _) = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(2, 2)) else { return XCTFail() }
    XCTAssertEqual(Array(msg.bytes.readableBytesView), [1, 1, 1, 1, 2, 2])
    XCTAssertEqual(msg.credit, 2, "each frame's credit is accounted as it arrives")
  }

  func testInconsistentCompressionAcrossFragmentsFailsTheStream() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: [.more, .compressed], payload: M.bytes(4))
    let f = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(4)).streamFailure
    XCTAssertEqual(f?.error.code, .protocolError)
    XCTAssertEqual(f?.write.last, .rst(streamID: 1, code: .protocolError))
    XCTAssertNil(m.streams[1])
  }

  func testHalfCloseEndsTheRequest() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: [.noMessage, .endStream], payload: M.bytes(0)), .endOfRequest(streamID: 1, write: []))
    XCTAssertEqual(m.streams[1]?.phase, .remoteClosed(.pending))
  }

  func testHalfCloseMidMessageFailsTheStream() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(4))
    XCTAssertEqual(
      m.receiveMessage(streamID: 1, flags: [.noMessage, .endStream], payload: M.bytes(0)).streamFailure?.error.reason, "half-close in the middle of a message")
  }

  func testMessageAfterEndStreamIsStreamClosed() {
    var m = M.server()
    M.open(&m, 1, endStream: true)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(1)).streamFailure?.error.code, .streamClosed)
  }

  func testMessageOnIdleStreamIsAProtocolError() {
    var m = M.server()
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(1)).connectionFailure?.error.reason, "MESSAGE on idle stream 1")
  }

  func testMessageOnAStreamThatIsGoneIsDropped() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.resetStream(streamID: 1, code: .cancel)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(10)), .buffered(write: []))
  }

  func testDroppedBytesStillCountOnTheConnectionWindow() {
    var local = ConnectionSettings()
    local.initialConnectionWindow = 65_536
    var m = M.server(local)
    M.open(&m, 1)
    _ = m.resetStream(streamID: 1, code: .cancel)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(40_000)), .buffered(write: [.windowUpdate(streamID: 0, increment: 40_000)]))
  }

  func testStreamWindowOverrunFailsTheStream() {
    var local = ConnectionSettings()
    local.initialStreamWindow = 65_536
    var m = M.server(local)
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(40_000))
    // The fragment's credit came back at once (nothing unconsumed), so 65 536 more fit...
    _ = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(10))
    // ...but now a message is unconsumed: more than the window is an overrun.
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(65_536)).streamFailure?.error.code, .flowControlError)
  }

  func testConnectionWindowOverrunIsAConnectionError() {
    var local = ConnectionSettings()
    local.initialConnectionWindow = 65_536
    local.initialStreamWindow = 1 << 20
    var m = M.server(local)
    M.open(&m, 1)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(65_537)).connectionFailure?.error.code, .flowControlError)
  }

  func testConnectionCreditReturnsAtHalfTheWindow() {
    var local = ConnectionSettings()
    local.initialConnectionWindow = 100_000
    var m = M.server(local)
    M.open(&m, 1)
    guard case .message(_, let first) = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(49_999)) else { return XCTFail() }
    XCTAssertEqual(first, [])
    guard case .message(_, let second) = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(1)) else { return XCTFail() }
    XCTAssertEqual(second, [.windowUpdate(streamID: 0, increment: 50_000)])
  }

  func testFragmentCreditIsHeldWhileAMessageIsUnconsumed() {
    var local = ConnectionSettings()
    local.initialStreamWindow = 65_536
    var m = M.server(local)
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(100))
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(40_000)), .holdingCredit(streamID: 1, write: []))
    XCTAssertEqual(m.streams[1]?.heldFragmentCredit, 40_000)
  }

  func testConsumingReleasesHeldCredit() {
    var local = ConnectionSettings()
    local.initialStreamWindow = 65_536
    var m = M.server(local)
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: [], payload: M.bytes(100))
    _ = m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(40_000))
    XCTAssertEqual(m.consumed(streamID: 1, credit: 100), .windowUpdate(streamID: 1, increment: 40_100))
    XCTAssertEqual(m.streams[1]?.heldFragmentCredit, 0)
  }

  func testConsumedAfterRemoteCloseReturnsNothing() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: .endStream, payload: M.bytes(200_000))
    XCTAssertNil(m.consumed(streamID: 1, credit: 200_000), "no credit for a stream that sends nothing more")
  }

  func testOversizedMessageIsReportedBeforeBuffering() {
    var local = ConnectionSettings()
    local.maxMessageSize = 1024
    var m = M.server(local)
    M.open(&m, 1)
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(2000)), .tooLarge(streamID: 1, size: 2000, write: []))
    XCTAssertNotNil(m.streams[1], "the server answers with trailers, so the stream stays")
  }

  func testOversizedAcrossFragmentsIsReported() {
    var local = ConnectionSettings()
    local.maxMessageSize = 1024
    var m = M.server(local)
    M.open(&m, 1)
    _ = m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(1000))
    XCTAssertEqual(m.receiveMessage(streamID: 1, flags: .more, payload: M.bytes(100)), .tooLarge(streamID: 1, size: 1100, write: []))
  }

  // MARK: TRAILERS, RST, WINDOW_UPDATE, GOAWAY

  func testTrailersFromAClientAreAProtocolError() {
    var m = M.server()
    M.open(&m, 1)
    guard case .connectionError(let f) = m.receiveTrailers(streamID: 1, payload: M.trailers()) else { return XCTFail() }
    XCTAssertEqual(f.error.reason, "TRAILERS from a client")
  }

  func testResetRemovesTheStream() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertEqual(m.receiveReset(streamID: 1, code: .cancel), .reset(streamID: 1, code: .cancel))
    XCTAssertNil(m.streams[1])
  }

  func testResetOnAClosedStreamIsIgnored() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.receiveReset(streamID: 1, code: .cancel)
    XCTAssertEqual(m.receiveReset(streamID: 1, code: .cancel), .ignored)
  }

  func testResetOnIdleStreamIsAProtocolError() {
    var m = M.server()
    guard case .connectionError(let f) = m.receiveReset(streamID: 1, code: .cancel) else { return XCTFail() }
    XCTAssertEqual(f.error.reason, "RST on idle stream 1")
  }

  func testResetDropsQueuedOutput() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.queue(.message(M.bytes(10), compressed: false, endStream: false), streamID: 1)
    _ = m.receiveReset(streamID: 1, code: .cancel)
    XCTAssertTrue(M.written(&m).frames.isEmpty)
  }

  func testConnectionWindowUpdateOpensTheWindow() {
    var m = M.server()
    XCTAssertEqual(m.receiveWindowUpdate(streamID: 0, increment: 100), .windowOpened)
    XCTAssertEqual(m.connectionSendWindow, ConnectionSettings.defaults.initialConnectionWindow + 100)
  }

  func testZeroConnectionWindowUpdateIsAProtocolError() {
    var m = M.server()
    guard case .connectionError(let f) = m.receiveWindowUpdate(streamID: 0, increment: 0) else { return XCTFail() }
    XCTAssertEqual(f.error.code, .protocolError)
  }

  func testConnectionWindowOverflowIsAFlowControlError() {
    var m = M.server()
    guard case .connectionError(let f) = m.receiveWindowUpdate(streamID: 0, increment: UInt32(WireLimits.maxWindow)) else { return XCTFail() }
    XCTAssertEqual(f.error.code, .flowControlError)
  }

  func testZeroStreamWindowUpdateFailsTheStream() {
    var m = M.server()
    M.open(&m, 1)
    guard case .streamError(let f) = m.receiveWindowUpdate(streamID: 1, increment: 0) else { return XCTFail() }
    XCTAssertEqual(f.write, [.rst(streamID: 1, code: .protocolError)])
  }

  func testStreamWindowOverflowFailsTheStream() {
    var m = M.server()
    M.open(&m, 1)
    guard case .streamError(let f) = m.receiveWindowUpdate(streamID: 1, increment: UInt32(WireLimits.maxWindow)) else { return XCTFail() }
    XCTAssertEqual(f.error.code, .flowControlError)
  }

  func testWindowUpdateOnIdleStreamIsAProtocolError() {
    var m = M.server()
    guard case .connectionError = m.receiveWindowUpdate(streamID: 5, increment: 1) else { return XCTFail() }
  }

  func testWindowUpdateOnAStreamThatIsGoneIsIgnored() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.resetStream(streamID: 1, code: .cancel)
    XCTAssertEqual(m.receiveWindowUpdate(streamID: 1, increment: 10), .ignored)
  }

  func testClientGoAwayChangesNothingOnTheServer() {
    var m = M.server()
    M.open(&m, 1)
    XCTAssertEqual(
      m.receiveGoAway(lastStreamID: 0, code: .noError, debug: "bye"), .goingAway(lastStreamID: 0, code: .noError, debug: "bye", refusedStreams: []))
    XCTAssertNotNil(m.streams[1])
    XCTAssertFalse(m.closesWhenIdle)
    guard case .request = m.receiveHeaders(streamID: 3, endStream: false, payload: M.request()) else { return XCTFail("HEADERS after it are answered") }
  }

  func testGoAwayRaisingTheLastStreamIsAProtocolError() {
    var m = M.server()
    _ = m.receiveGoAway(lastStreamID: 0, code: .noError, debug: "")
    guard case .connectionError = m.receiveGoAway(lastStreamID: 1, code: .noError, debug: "") else { return XCTFail() }
  }

  // MARK: Drain

  func testBeginDrainSendsGoAwayAndPing() {
    var m = M.server()
    XCTAssertEqual(
      m.beginDrain(pingOpaque: 77), [.goAway(lastStreamID: WireLimits.maxStreamID, code: .noError, debug: "draining"), .ping(ack: false, opaque: 77)])
    XCTAssertEqual(m.localGoAway, .draining)
    XCTAssertEqual(m.goAwaySent, WireLimits.maxStreamID)
    XCTAssertFalse(m.closesWhenIdle, "phase one still admits HEADERS in flight")
  }

  func testBeginDrainTwiceDoesNothing() {
    var m = M.server()
    _ = m.beginDrain(pingOpaque: 1)
    XCTAssertEqual(m.beginDrain(pingOpaque: 1), [])
  }

  func testFinishDrainNamesTheLastStream() {
    var m = M.server()
    M.open(&m, 1)
    M.open(&m, 3)
    _ = m.beginDrain(pingOpaque: 1)
    XCTAssertEqual(m.finishDrain(), .goAway(lastStreamID: 3, code: .noError, debug: "draining"))
    XCTAssertEqual(m.localGoAway, .sent(lastStreamID: 3))
    XCTAssertTrue(m.closesWhenIdle)
  }

  func testFinishDrainOnceOnly() {
    var m = M.server()
    _ = m.beginDrain(pingOpaque: 1)
    _ = m.finishDrain()
    XCTAssertNil(m.finishDrain())
  }

  func testAConnectionErrorAfterTheFinalGoAwayKeepsTheLowerId() {
    var m = M.server()
    M.open(&m, 1)
    _ = m.beginDrain(pingOpaque: 1)
    _ = m.finishDrain()
    _ = m.receiveHeaders(streamID: 3, endStream: false, payload: M.request())
    _ = m.connectionError(ConnectionError(.internalError, "x"))
    XCTAssertEqual(m.localGoAway, .sent(lastStreamID: 1))
  }
}
