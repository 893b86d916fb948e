import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import QuizwireProtos
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// The gRPC/HTTP2 listener (Hardening, item 3): half-open and idle connections go away, and
/// oversized requests get clear answers.
final class HTTP2ListenerTests: XCTestCase {
  override func setUp() { DescriptorLimit.raiseSoftLimit() }

  /// Half of the client preface and then nothing: closed within the framed port's 10 s.
  func testHalfPrefaceConnectionsAreClosedWithinTheHandshakeTimeout() async throws {
    let server = try HardeningServer([])
    defer { server.stop() }
    let addresses = try server.addresses()
    let before = try server.rssMB()
    let raw = try RawConnections(port: addresses.grpcPort, count: 300)
    for i in raw.fds.indices { raw.send(Array(RawH2.magic.prefix(12)), on: i) }
    let start = ContinuousClock.now
    var open = raw.fds.count
    while open > 0, ContinuousClock.now - start < .seconds(13) {
      try await Task.sleep(for: .milliseconds(250))
      open = raw.fds.indices.filter { !raw.isClosedByServer($0) }.count
    }
    let elapsed = ContinuousClock.now - start
    print("half preface: \(open) of 300 still open after \(elapsed); RSS \(before) → \(try server.rssMB()) MB")
    XCTAssertEqual(open, 0, "half-open connections outlive the handshake timeout")
    XCTAssertGreaterThan(elapsed, .seconds(9), "the same 10 s as the framed port, not sooner")
    let metrics = try await server.metrics()
    XCTAssertEqual(sample(metrics, #"rpc_server_handshake_timeouts_total{listener="grpc"}"#), 300)
  }

  /// Connections without calls are closed after `--grpc-max-idle`: a client's that made a
  /// call and answers the GOAWAY's ping like any client, and one that completed the preface and
  /// then went silent (closed once the ping has gone unanswered for 5 s). grpc-swift's own
  /// client reconnects at once, so raw connections show what the server does.
  func testIdleConnectionsAreClosedAfterMaxIdle() async throws {
    let server = try HardeningServer(["--grpc-max-idle", "1"])
    defer { server.stop() }
    let addresses = try server.addresses()
    let raw = try RawConnections(port: addresses.grpcPort, count: 2)
    var request = Bench_V1_EchoRequest()
    request.payload = Data("once".utf8)
    let message = [UInt8](try request.serializedData())
    raw.send(
      RawH2.magic + RawH2.settings([]) + RawH2.headers(stream: 1, RawH2.requestHeaders(path: "/bench.v1.EchoService/Unary"))
        + RawH2.frame(type: 0x0, flags: 0x1, stream: 1, [0] + RawH2.be32(UInt32(message.count)) + message), on: 0)
    raw.send(RawH2.magic + RawH2.settings([]), on: 1)
    let start = ContinuousClock.now
    var politeClosed: Duration?
    var silentClosed: Duration?
    var pending: [UInt8] = []
    while silentClosed == nil || politeClosed == nil, ContinuousClock.now - start < .seconds(9) {
      try await Task.sleep(for: .milliseconds(50))
      if politeClosed == nil {
        if let bytes = raw.receive(on: 0) {
          pending += bytes
          raw.send(RawH2.acknowledgements(consuming: &pending), on: 0)
        } else {
          politeClosed = ContinuousClock.now - start
        }
      }
      if silentClosed == nil, raw.isClosedByServer(1) { silentClosed = ContinuousClock.now - start }
    }
    print("idle: a client's connection closed after \(String(describing: politeClosed)), a silent one after \(String(describing: silentClosed))")
    let polite = try XCTUnwrap(politeClosed, "a client's idle connection outlives --grpc-max-idle")
    XCTAssertGreaterThan(polite, .milliseconds(900))
    XCTAssertLessThan(polite, .seconds(3))
    let silent = try XCTUnwrap(silentClosed, "a silent connection outlives --grpc-max-idle")
    XCTAssertGreaterThan(silent, .seconds(5))
    XCTAssertLessThan(silent, .seconds(8))
  }

  /// 64 KB of request metadata is beyond the 16 KB header list limit: NIOHTTP2 can only treat
  /// that as a connection error, so the caller sees UNAVAILABLE (docs/services.md, "Limits");
  /// other connections are untouched and a large but legitimate credential (8 KB) passes.
  func testOversizedMetadataFailsItsConnectionOnly() async throws {
    let server = try HardeningServer([])
    defer { server.stop() }
    let addresses = try server.addresses()
    try await withHardeningClients(addresses) { clients in
      var big = Metadata()
      big.addString(String(repeating: "a", count: 64 * 1024), forKey: "x-blob")
      let error = await Self.rpcError { try await clients.grpc.unary(.with { $0.payload = Data("big".utf8) }, metadata: big) }
      print("64 KB metadata: \(String(describing: error))")
      XCTAssertEqual(error?.code, .unavailable)
      let other = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: addresses.grpcPort), transportSecurity: .plaintext)
      try await withGRPCClient(transport: other) { client in
        var legit = Metadata()
        legit.addString(String(repeating: "t", count: 8 * 1024), forKey: "x-blob")
        let reply = try await Bench_V1_EchoService.Client(wrapping: client).unary(.with { $0.payload = Data("ok".utf8) }, metadata: legit)
        XCTAssertEqual(reply.payload, Data("ok".utf8))
      }
    }
  }

  /// A 5 MB message is over the 4 MiB limit: that call ends RESOURCE_EXHAUSTED, the server
  /// logs the same, and the connection goes on serving.
  func testOversizedMessageFailsOnlyThatCallWithResourceExhausted() async throws {
    let server = try HardeningServer([])
    defer { server.stop() }
    let addresses = try server.addresses()
    try await withHardeningClients(addresses) { clients in
      let payload = Data(repeating: 0x61, count: 5_000_000)
      let error = await Self.rpcError { try await clients.grpc.unary(.with { $0.payload = payload }) }
      print("5 MB message: \(String(describing: error))")
      XCTAssertEqual(error?.code, .resourceExhausted)
      let reply = try await clients.grpc.unary(.with { $0.payload = Data("after".utf8) })
      XCTAssertEqual(reply.payload, Data("after".utf8), "the same connection still serves")
    }
    let statuses = server.entries().filter { $0["message"] as? String == "rpc" }.compactMap { $0["status"] as? String }
    print("5 MB message: server logged \(statuses.filter { $0 != "OK" })")
    XCTAssertTrue(statuses.contains("RESOURCE_EXHAUSTED"), "\(statuses.filter { $0 != "OK" })")
    XCTAssertFalse(statuses.contains("INTERNAL"))
  }

  /// Clients advertising the largest windows that start many endless streams and never read
  /// can't grow the server without bound.
  func testNonReadingClientsWithHugeWindowsAreBounded() async throws {
    let server = try HardeningServer([])
    defer { server.stop() }
    let addresses = try server.addresses()
    try await withHardeningClients(addresses) { clients in
      try await clients.warmUp()
      try await Task.sleep(for: .milliseconds(300))
      let before = try server.rssMB()
      let raw = try RawConnections(port: addresses.grpcPort, count: 4, receiveBuffer: 4096)
      for i in raw.fds.indices { raw.send(RawH2.endlessStreams(count: 100, payloadBytes: 1024), on: i) }
      try await Task.sleep(for: .seconds(3))
      let growth = try server.rssMB() - before
      let p99 = try await clients.grpcP99()
      print("non-reading h2 clients: RSS +\(growth) MB, p99 \(p99)")
      XCTAssertLessThan(growth, 40, "4 clients × 100 streams")
      // Memory is this test's bound; the latency bound only separates "still serving" from
      // "starved". Seen: 6–17 ms when the client's connection is on the other event loop, and
      // 0.5–1.0 s when it shares a loop with the 400 streams (their handlers keep producing
      // while paced; known, see docs/services.md "Limits"). A starved client times out.
      XCTAssertLessThan(p99, .seconds(3))
      raw.closeAll()
    }
  }

  static func rpcError(_ body: () async throws -> Any) async -> RPCError? {
    do {
      _ = try await body()
      return nil
    } catch let error as RPCError {
      return error
    } catch {
      return RPCError(code: .unknown, message: "\(error)")
    }
  }
}

/// HTTP/2 client bytes written by hand, for peers no real client library would be.
enum RawH2 {
  static let magic = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

  static func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(payload.count)
    return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags] + be32(stream) + payload
  }

  static func be32(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
  }

  static func settings(_ values: [(UInt16, UInt32)]) -> [UInt8] {
    frame(type: 0x4, flags: 0, stream: 0, values.flatMap { [UInt8($0.0 >> 8), UInt8($0.0 & 0xff)] + be32($0.1) })
  }

  static func requestHeaders(path: String) -> [(String, String)] {
    [
      (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"), ("content-type", "application/grpc"),
      ("te", "trailers"),
    ]
  }

  /// The SETTINGS and PING acknowledgements a client owes for the complete frames in `bytes`
  /// (consumed; a partial frame stays).
  static func acknowledgements(consuming bytes: inout [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    while bytes.count >= 9 {
      let length = Int(bytes[0]) << 16 | Int(bytes[1]) << 8 | Int(bytes[2])
      guard bytes.count >= 9 + length else { break }
      let (type, flags) = (bytes[3], bytes[4])
      if type == 0x4, flags & 0x1 == 0 { out += frame(type: 0x4, flags: 0x1, stream: 0, []) }
      if type == 0x6, flags & 0x1 == 0 { out += frame(type: 0x6, flags: 0x1, stream: 0, Array(bytes[9..<(9 + length)])) }
      bytes.removeFirst(9 + length)
    }
    return out
  }

  /// HPACK literal header fields without indexing, no Huffman coding.
  static func headers(stream: UInt32, _ fields: [(String, String)]) -> [UInt8] {
    var block: [UInt8] = []
    for (name, value) in fields {
      block.append(0)
      block += hpackString(name)
      block += hpackString(value)
    }
    return frame(type: 0x1, flags: 0x4, stream: stream, block)
  }

  static func hpackString(_ text: String) -> [UInt8] {
    let bytes = Array(text.utf8)
    var out: [UInt8] = []
    if bytes.count < 127 {
      out.append(UInt8(bytes.count))
    } else {
      out.append(127)
      var rest = bytes.count - 127
      while rest >= 128 {
        out.append(UInt8(rest % 128 + 128))
        rest /= 128
      }
      out.append(UInt8(rest))
    }
    return out + bytes
  }

  /// The preface with the largest windows, then `count` ServerStream calls asking for the most
  /// messages the bench allows.
  static func endlessStreams(count: Int, payloadBytes: Int) -> [UInt8] {
    let maxWindow: UInt32 = (1 << 31) - 1
    var out = magic + settings([(0x4, maxWindow), (0x5, 1 << 24 - 1)])
    out += frame(type: 0x8, flags: 0, stream: 0, be32(maxWindow - 65_535))
    var request = Bench_V1_EchoRequest()
    request.payload = Data(repeating: 0x61, count: payloadBytes)
    request.count = 10_000_000
    let message = [UInt8](try! request.serializedData())
    for i in 0..<count {
      let stream = UInt32(2 * i + 1)
      out += headers(stream: stream, requestHeaders(path: "/bench.v1.EchoService/ServerStream"))
      out += frame(type: 0x0, flags: 0x1, stream: stream, [0] + be32(UInt32(message.count)) + message)
    }
    return out
  }
}
