import NIOCore
import NIOEmbedded
import XCTest

@testable import FramedWire

final class CodecTests: XCTestCase {
  func testHeaderIsTenBigEndianBytes() {
    XCTAssertEqual(WireTest.encode(.rst(streamID: 0x0102_0304, code: .cancel)), [0, 0, 0, 4, 5, 0, 1, 2, 3, 4, 0, 0, 0, 8])
  }

  func testOversizedLengthIsRejectedFromTheHeaderAlone() {
    // Only the 10 header bytes are present: the decoder must not wait for (or allocate) 4 GiB.
    var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xF0, 3, 0, 0, 0, 0, 1])
    var decoder = FrameDecoder(settings: ConnectionSettings(), expectPreface: false)
    XCTAssertThrowsError(try decoder.decode(&buffer)) { XCTAssertEqual(($0 as? ConnectionError)?.code, .frameSizeError) }
  }

  func testPartialInputWaitsAndConsumesNothing() throws {
    let bytes = WireTest.encode(.ping(ack: false, opaque: 42))
    var decoder = FrameDecoder(settings: ConnectionSettings(), expectPreface: false)
    var buffer = ByteBuffer(bytes: bytes.prefix(12))
    XCTAssertNil(try decoder.decode(&buffer))
    XCTAssertEqual(buffer.readableBytes, 12)
    buffer.writeBytes(bytes.dropFirst(12))
    XCTAssertEqual(try decoder.decode(&buffer), .frame(.ping(ack: false, opaque: 42)))
  }

  func testWrongProtocolFailsOnTheFirstBytes() {
    var buffer = ByteBuffer(string: "GET")
    var decoder = FrameDecoder(settings: ConnectionSettings())
    XCTAssertThrowsError(try decoder.decode(&buffer))
  }

  func testCompressionRoundTripsAndRefusesBombs() throws {
    let message = ByteBuffer(repeating: 0x61, count: 1_000_000)
    for encoding in [MessageEncoding.gzip, .deflate] {
      let compressed = try XCTUnwrap(encoding.compress(message))
      XCTAssertLessThan(compressed.readableBytes, 10_000)
      XCTAssertEqual(try encoding.decompress(compressed, maxSize: 1_000_000), message)
      XCTAssertThrowsError(try encoding.decompress(compressed, maxSize: 999_999)) {
        XCTAssertEqual($0 as? MessageEncoding.DecompressionError, .tooLarge(limit: 999_999))
      }
      XCTAssertThrowsError(try encoding.decompress(ByteBuffer(bytes: [1, 2, 3, 4, 5]), maxSize: 100), "garbage")
      XCTAssertThrowsError(
        try encoding.decompress(compressed.getSlice(at: compressed.readerIndex, length: compressed.readableBytes - 3)!, maxSize: 2_000_000), "truncated")
      var trailing = compressed
      trailing.writeBytes([9, 9])
      XCTAssertThrowsError(try encoding.decompress(trailing, maxSize: 2_000_000), "trailing bytes")
    }
    XCTAssertNil(MessageEncoding(headerValue: "snappy"))
    XCTAssertEqual(MessageEncoding(headerValue: ""), .identity)
  }
}
