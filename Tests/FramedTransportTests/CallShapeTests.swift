import BenchService
import Foundation
import FramedTransport
import GRPCCore
import GRPCProtobuf
import QuizwireProtos
import ServiceKit
import XCTest

/// The same service code, the same client code, over both transports: every call shape,
/// statuses with details, metadata both ways.
final class CallShapeTests: XCTestCase {
  func exerciseShapes<T: ClientTransport>(_ grpc: GRPCClient<T>, file: StaticString = #filePath, line: UInt = #line) async throws {
    let echo = Bench_V1_EchoService.Client(wrapping: grpc)
    let unary = try await echo.unary(echoRequest("hi"))
    XCTAssertEqual(unary.payload, Data("hi".utf8), file: file, line: line)

    let indices = try await echo.serverStream(echoRequest("x", count: 5)) { response in
      var seen: [UInt32] = []
      for try await m in response.messages {
        XCTAssertEqual(m.payload, Data("x".utf8))
        seen.append(m.index)
      }
      return seen
    }
    XCTAssertEqual(indices, [0, 1, 2, 3, 4], file: file, line: line)

    let clientStream = try await echo.clientStream(
      request: StreamingClientRequest { writer in
        for i in 0..<7 { try await writer.write(echoRequest("m\(i)")) }
      })
    XCTAssertEqual(clientStream.index, 7, file: file, line: line)
    XCTAssertEqual(clientStream.payload, Data("m6".utf8), file: file, line: line)

    // Bidi: strict ping-pong, each echo read before the next request goes out.
    let (stream, continuation) = AsyncStream.makeStream(of: Bench_V1_EchoRequest.self)
    let echoed = try await echo.bidi(
      request: StreamingClientRequest { writer in
        for try await m in stream { try await writer.write(m) }
      }
    ) { response in
      var got: [String] = []
      continuation.yield(echoRequest("r0"))
      for try await m in response.messages {
        got.append(String(decoding: m.payload, as: UTF8.self))
        if got.count == 5 { continuation.finish() } else { continuation.yield(echoRequest("r\(got.count)")) }
      }
      return got
    }
    XCTAssertEqual(echoed, ["r0", "r1", "r2", "r3", "r4"], file: file, line: line)

    let health = Grpc_Health_V1_Health.Client(wrapping: grpc)
    let served = try await health.check(.with { $0.service = "" }).status
    XCTAssertEqual(served, .serving, file: file, line: line)
  }

  func testEveryCallShapeOnBothTransports() async throws {
    let store = HealthStatusStore()
    let services: [any RegistrableRPCService] = [EchoService(), HealthService(store: store)]
    let framed = try await FramedTestServer(services: services)
    let h2 = try await H2TestServer(services: services)
    try await withFramedClient([framed.target]) { try await self.exerciseShapes($0) }
    try await withH2Client(port: h2.port) { try await self.exerciseShapes($0) }
    let leaked = await framed.transport.openStreamCount()
    XCTAssertEqual(leaked, 0, "per-stream state must not leak")
    try await framed.drain()
    try await h2.stop()
  }

  func testEveryCallShapeWithHandlersOnTheEventLoop() async throws {
    let services: [any RegistrableRPCService] = [EchoService(), HealthService(store: HealthStatusStore())]
    let framed = try await FramedTestServer(services: services) { $0.runHandlersOnEventLoop = true }
    try await withFramedClient([framed.target]) { try await self.exerciseShapes($0) }
    let leaked = await framed.transport.openStreamCount()
    XCTAssertEqual(leaked, 0)
    try await framed.drain()
  }

  func checkStatuses<T: ClientTransport>(_ grpc: GRPCClient<T>) async throws {
    let echo = Bench_V1_EchoService.Client(wrapping: grpc)
    for n in 1...16 {
      let error = await expectRPCError { _ = try await echo.unary(echoRequest("status:\(n)")) }
      XCTAssertEqual(error?.code.rawValue, n)
      XCTAssertEqual(error?.message, "failed with \(n) — ünïcode ok")
      let status = try XCTUnwrap(try error?.unpackGoogleRPCStatus(), "details for \(n)")
      XCTAssertEqual(status.details.count, 2)
      let info = try XCTUnwrap(status.details[0].errorInfo, "ErrorInfo first")
      XCTAssertEqual(info.reason, "TEST_\(n)")
      XCTAssertEqual(info.metadata, ["n": "\(n)"])
      let bad = try XCTUnwrap(status.details[1].badRequest, "BadRequest second")
      XCTAssertEqual(bad.violations.first?.field, "payload")
    }
    // OK (0) with a payload, on the same connection after sixteen failures.
    let fine = try await echo.unary(echoRequest("fine"))
    XCTAssertEqual(fine.payload, Data("fine".utf8))
  }

  func testAllSeventeenStatusCodesRoundTripWithDetailsOnBothTransports() async throws {
    let services: [any RegistrableRPCService] = [ControlledEchoService(probe: Probe())]
    let framed = try await FramedTestServer(services: services)
    let h2 = try await H2TestServer(services: services)
    try await withFramedClient([framed.target]) { try await self.checkStatuses($0) }
    try await withH2Client(port: h2.port) { try await self.checkStatuses($0) }
    try await framed.drain()
    try await h2.stop()
  }

  func checkMetadata<T: ClientTransport>(_ grpc: GRPCClient<T>) async throws {
    let echo = Bench_V1_EchoService.Client(wrapping: grpc)
    let request = ClientRequest(message: echoRequest("echo-metadata"), metadata: ["x-user": "alice", "x-blob-bin": .binary([0, 9, 255])])
    try await echo.unary(request: request) { response in
      XCTAssertEqual(Array(response.metadata[stringValues: "x-user"]), ["alice"])
      XCTAssertEqual(Array(response.metadata[binaryValues: "x-blob-bin"]), [[0, 9, 255]])
      XCTAssertEqual(Array(response.trailingMetadata[stringValues: "x-trailer"]), ["done"])
      XCTAssertEqual(Array(response.trailingMetadata[binaryValues: "x-trailer-bin"]), [[0, 1, 255]])
    }
  }

  func testMetadataTravelsBothWaysOnBothTransports() async throws {
    let services: [any RegistrableRPCService] = [ControlledEchoService(probe: Probe())]
    let framed = try await FramedTestServer(services: services)
    let h2 = try await H2TestServer(services: services)
    try await withFramedClient([framed.target]) { try await self.checkMetadata($0) }
    try await withH2Client(port: h2.port) { try await self.checkMetadata($0) }
    try await framed.drain()
    try await h2.stop()
  }

  func testMetadataTheWireCannotCarryIsAClearError() async throws {
    let framed = try await FramedTestServer(services: [ControlledEchoService(probe: Probe())])
    try await withFramedClient([framed.target]) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      // (GRPCCore itself refuses binary values under keys without -bin.)
      for bad: Metadata in [["x user": "a"], ["grpc-custom": "a"], ["x-text-bin": "a"], ["x-tab": "a\tb"]] {
        let error = await expectRPCError { _ = try await echo.unary(request: ClientRequest(message: echoRequest("hi"), metadata: bad)) { try $0.message } }
        XCTAssertEqual(error?.code, .internalError, "\(bad)")
        XCTAssertTrue(error?.message.contains("metadata") ?? false, error?.message ?? "")
      }
      // Keys are lowercased as on HTTP/2, and nothing was lost to the connection.
      let ok = try await echo.unary(request: ClientRequest(message: echoRequest("after"), metadata: ["X-Request-ID": "r1"])) { try $0.message }
      XCTAssertEqual(ok.payload, Data("after".utf8))
    }
    try await framed.drain()
  }

  func testUnknownMethodIsUnimplemented() async throws {
    let framed = try await FramedTestServer(services: [EchoService()])
    try await withFramedClient([framed.target]) { grpc in
      let health = Grpc_Health_V1_Health.Client(wrapping: grpc)
      let error = await expectRPCError { _ = try await health.check(.init()) }
      XCTAssertEqual(error?.code, .unimplemented)
    }
    try await framed.drain()
  }
}
