import FramedWire
import NIOCore
import NIOEmbedded
import XCTest

@testable import FramedTransport

/// The NIO shell, driven byte by byte on an `EmbeddedChannel`.
final class ConnectionHandlerTests: XCTestCase {
  func makeServerChannel() throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    let commands = ConnectionCommands(eventLoop: channel.eventLoop)
    let callbacks = ServerCallbacks(streamHandler: { _, _ in }, encodings: .all)
    let handler = ServerConnectionHandler(config: FramedConnectionConfig(), commands: commands, status: ConnectionStatus(), callbacks: callbacks)
    try channel.pipeline.syncOperations.addHandler(FrameReader(settings: ConnectionSettings()))
    try channel.pipeline.syncOperations.addHandler(handler)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return channel
  }

  func written(_ channel: EmbeddedChannel) throws -> [DecodedItem] {
    var all = ByteBuffer()
    while var b = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&b) }
    return RawClient.decode(Array(all.readableBytesView))
  }

  func testServerAnswersThePrefaceWithItsOwnAndSettingsThenEchoesPings() throws {
    let channel = try makeServerChannel()
    XCTAssertTrue(try written(channel).isEmpty, "the server speaks only after the client's preface")
    var input = ByteBuffer()
    Preface.write(into: &input)
    FrameEncoder.encodeSettings(ConnectionSettings(), into: &input)
    FrameEncoder.encode(.ping(ack: false, opaque: 77), into: &input)
    try channel.writeInbound(input)
    let out = try written(channel)
    XCTAssertEqual(out.first, .preface(version: 1))
    guard case .frame(.settings(let entries))? = out.dropFirst().first else { return XCTFail("\(out)") }
    XCTAssertEqual(entries.count, 7)
    XCTAssertEqual(out.last, .frame(.ping(ack: true, opaque: 77)))
    XCTAssertTrue(channel.isActive)
  }

  func testMalformedFrameGetsGoAwayAndClose() throws {
    let channel = try makeServerChannel()
    var input = ByteBuffer()
    Preface.write(into: &input)
    FrameEncoder.encodeSettings(ConnectionSettings(), into: &input)
    input.writeBytes([0, 0, 0, 3, 5, 0, 0, 0, 0, 1, 0, 0, 0])  // RST with a 3-byte payload
    try channel.writeInbound(input)
    channel.embeddedEventLoop.run()
    let out = try written(channel)
    guard case .frame(.goAway(0, .frameSizeError, let reason))? = out.last else { return XCTFail("\(out)") }
    XCTAssertTrue(reason.contains("RST"), reason)
    XCTAssertFalse(channel.isActive)
  }
}
