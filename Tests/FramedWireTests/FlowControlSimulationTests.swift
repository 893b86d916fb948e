import NIOCore
import XCTest

@testable import FramedWire

/// Two state machines wired back to back, no sockets: whatever credit policy the receiver
/// follows, the sender never overruns a window and every byte arrives.
final class FlowControlSimulationTests: XCTestCase {
  func testBulkTransferWithALaggingReaderNeverOverrunsAWindow() throws {
    var client = ConnectionStateMachine(role: .client, localSettings: ConnectionSettings())
    var server = ConnectionStateMachine(role: .server, localSettings: ConnectionSettings())
    var toServer = ByteBuffer(), toClient = ByteBuffer()
    var serverDecoder = FrameDecoder(settings: ConnectionSettings(), expectPreface: false)
    var clientDecoder = FrameDecoder(settings: ConnectionSettings(), expectPreface: false)
    FrameEncoder.encodeSettings(ConnectionSettings(), into: &toServer)
    FrameEncoder.encodeSettings(ConnectionSettings(), into: &toClient)
    _ = client.receive(.preface(version: 1), now: .now())
    _ = server.receive(.preface(version: 1), now: .now())

    let now = NIODeadline.now()
    var delivered = 0
    var pendingConsume: [(UInt32, Int)] = []
    var openedOnServer = false
    var rounds = 0
    var id: UInt32 = 0
    let total = 40
    while delivered < total && rounds < 10_000 {
      rounds += 1
      // Client → server.
      while let item = try clientDecoder.decode(&toClient) {
        switch client.receive(
          .frame(
            {
              if case .frame(let f) = item { return f }; fatalError()
            }()), now: now)
        {
        case .ready:
          id = try client.openStream().get()
          var h = RequestHeaders()
          h.method = "/a/b"
          FrameEncoder.encode(.headers(streamID: id, endStream: false, payload: ByteBuffer(bytes: try h.serializedBytes() as [UInt8])), into: &toServer)
          for _ in 0..<total {
            XCTAssertTrue(client.queue(.message(ByteBuffer(repeating: 3, count: 100_000), compressed: false, endStream: false), streamID: id))
          }
        case .connectionError(let e, _): XCTFail("client: \(e)")
        case .streamFailed(_, let e, _): XCTFail("client: \(e)")
        default: break
        }
      }
      var events: [ConnectionStateMachine.SendEvent] = []
      client.writePending(into: &toServer, byteLimit: 128 * 1024, events: &events)
      // Server side: the reader consumes one message per round, a round late.
      while let item = try serverDecoder.decode(&toServer) {
        let action = server.receive(
          .frame(
            {
              if case .frame(let f) = item { return f }; fatalError()
            }()), now: now)
        switch action {
        case .requestHeaders: openedOnServer = true
        case .message(let sid, let bytes, _, let credit, _, let also):
          XCTAssertEqual(bytes.readableBytes, 100_000)
          pendingConsume.append((sid, credit))
          for f in also { FrameEncoder.encode(f, into: &toClient) }
        case .write(let frames): for f in frames { FrameEncoder.encode(f, into: &toClient) }
        case .connectionError(let e, _): return XCTFail("server connection error: \(e)")
        case .streamFailed(_, let e, _): return XCTFail("server stream error: \(e)")
        default: break
        }
      }
      if !pendingConsume.isEmpty {
        let (sid, credit) = pendingConsume.removeFirst()
        delivered += 1
        if let f = server.consumed(streamID: sid, credit: credit) { FrameEncoder.encode(f, into: &toClient) }
      }
    }
    XCTAssertTrue(openedOnServer)
    XCTAssertEqual(delivered, total, "all messages arrive (no deadlock) in \(rounds) rounds")
  }
}
