import BenchService
import Foundation
import FramedTransport
import FramedWire
import NIOCore
import QuizwireProtos
import WireProtos
import XCTest

/// docs/protocol.md §7.3: the server compresses responses with the request's encoding, and only
/// when the client's SETTINGS ACCEPT_ENCODINGS has it — checked from a raw client that sends its
/// own SETTINGS and a gzip request.
final class ResponseEncodingTests: XCTestCase {
  struct Response {
    var headers: ResponseHeaders
    /// The flags of the response's MESSAGE frames.
    var messageFlags: [FrameFlags]
    var echoed: Bench_V1_EchoResponse
    var trailers: Trailers
  }

  /// One unary echo with a gzip-compressed request from a client that accepts `accept`.
  func gzipEcho(clientAccepts accept: EncodingSet, file: StaticString = #filePath, line: UInt = #line) async throws -> Response {
    let server = try await FramedTestServer(services: [EchoService()])
    let client = try await RawClient(port: server.target.port)
    var settings = ConnectionSettings()
    settings.acceptEncodings = accept
    var headers = RequestHeaders()
    headers.method = "/bench.v1.EchoService/Unary"
    headers.messageEncoding = MessageEncoding.gzip.rawValue
    let headerBytes: [UInt8] = try headers.serializedBytes()
    let request: [UInt8] = try echoRequest(bytes: 4096).serializedBytes()
    let compressed = try XCTUnwrap(MessageEncoding.gzip.compress(ByteBuffer(bytes: request)), file: file, line: line)
    try await client.write { b in
      Preface.write(into: &b)
      FrameEncoder.encodeSettings(settings, into: &b)
      FrameEncoder.encode(.headers(streamID: 1, endStream: false, payload: ByteBuffer(bytes: headerBytes)), into: &b)
      FrameEncoder.encode(.message(streamID: 1, flags: [.compressed, .endStream], payload: compressed), into: &b)
    }
    let (items, _) = try await client.responses(untilClosed: false) { items in
      items.contains { if case .frame(.trailers) = $0 { return true } else { return false } }
    }
    await client.close()
    try await server.drain()

    var responseHeaders: ResponseHeaders?
    var flags: [FrameFlags] = []
    var payload = ByteBuffer()
    var trailers: Trailers?
    for item in items {
      switch item {
      case .frame(.headers(1, _, let p)): responseHeaders = try ResponseHeaders(serializedBytes: Array(p.readableBytesView))
      case .frame(.message(1, let f, var p)):
        flags.append(f)
        payload.writeBuffer(&p)
      case .frame(.trailers(1, let p)): trailers = try Trailers(serializedBytes: Array(p.readableBytesView))
      default: break
      }
    }
    let finalTrailers = try XCTUnwrap(trailers, "no TRAILERS: \(items)", file: file, line: line)
    XCTAssertEqual(finalTrailers.code, 0, "the call succeeded: \(finalTrailers.message)", file: file, line: line)
    let gotHeaders = try XCTUnwrap(responseHeaders, "no response HEADERS: \(items)", file: file, line: line)
    if flags.first?.contains(.compressed) ?? false { payload = try MessageEncoding.gzip.decompress(payload, maxSize: 1 << 20) }
    let echoed = try Bench_V1_EchoResponse(serializedBytes: Array(payload.readableBytesView))
    return Response(headers: gotHeaders, messageFlags: flags, echoed: echoed, trailers: finalTrailers)
  }

  func testResponsesAreNotCompressedWithAnEncodingTheClientDoesNotAccept() async throws {
    for accept: EncodingSet in [[.identity], [.identity, .deflate]] {
      let response = try await self.gzipEcho(clientAccepts: accept)
      XCTAssertFalse(response.messageFlags.isEmpty, "accept \(accept.rawValue): a response message")
      XCTAssertFalse(response.messageFlags.contains { $0.contains(.compressed) }, "accept \(accept.rawValue): \(response.messageFlags)")
      XCTAssertEqual(response.headers.messageEncoding, "", "accept \(accept.rawValue): identity is not named")
      XCTAssertEqual(response.echoed.payload, echoRequest(bytes: 4096).payload)
    }
  }

  func testResponsesUseTheRequestsEncodingWhenTheClientAcceptsIt() async throws {
    let response = try await self.gzipEcho(clientAccepts: [.identity, .gzip])
    XCTAssertFalse(response.messageFlags.isEmpty)
    XCTAssertTrue(response.messageFlags.allSatisfy { $0.contains(.compressed) }, "\(response.messageFlags)")
    XCTAssertEqual(response.headers.messageEncoding, "gzip")
    XCTAssertEqual(response.echoed.payload, echoRequest(bytes: 4096).payload)
  }
}
