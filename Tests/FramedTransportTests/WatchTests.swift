import BenchService
import FramedTransport
import GRPCCore
import GRPCProtobuf
import NIOConcurrencyHelpers
import QuizwireProtos
import XCTest

/// `FramedClientTransport.watch`: a server stream read by callback, with no task waiting on it.
final class WatchTests: XCTestCase {
  /// What a watch heard, in order.
  final class Heard: Sendable {
    let messages = NIOLockedValueBox<[Bench_V1_EchoResponse]>([])
    let ends = NIOLockedValueBox<[RPCError?]>([])
    func record(_ event: FramedWatchEvent) {
      switch event {
      case .message(let bytes):
        let message = try! ProtobufDeserializer<Bench_V1_EchoResponse>().deserialize(bytes)
        self.messages.withLockedValue { $0.append(message) }
      case .ended(let error): self.ends.withLockedValue { $0.append(error) }
      }
    }
    var ended: Bool { !self.ends.withLockedValue { $0 }.isEmpty }
  }

  func withTransport(_ targets: [FramedTarget], _ body: (FramedClientTransport) async throws -> Void) async throws {
    let transport = try FramedClientTransport(config: framedClientConfig(targets))
    try await withGRPCClient(transport: transport) { _ in try await body(transport) }
  }

  func request(_ message: Bench_V1_EchoRequest) throws -> FramedBytes { try ProtobufSerializer<Bench_V1_EchoRequest>().serialize(message) }

  func testMessagesArriveInOrderThenOneEnd() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withTransport([server.target]) { transport in
      let heard = Heard()
      _ = try await transport.watch(
        descriptor: Bench_V1_EchoService.Method.ServerStream.descriptor, metadata: [:], request: try self.request(echoRequest("x", count: 5)),
        onEvent: heard.record)
      let ended = await probe.eventually { heard.ended }
      XCTAssertTrue(ended)
      XCTAssertEqual(heard.messages.withLockedValue { $0.map(\.index) }, [0, 1, 2, 3, 4])
      XCTAssertEqual(heard.ends.withLockedValue { $0.count }, 1)
      XCTAssertNil(heard.ends.withLockedValue { $0.first } ?? nil, "ended OK")
    }
    try await server.drain()
  }

  func testAFailedCallEndsWithItsStatus() async throws {
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: Probe())])
    try await withTransport([server.target]) { transport in
      let heard = Heard()
      let missing = MethodDescriptor(fullyQualifiedService: "bench.v1.EchoService", method: "NoSuchMethod")
      _ = try await transport.watch(descriptor: missing, metadata: [:], request: try self.request(echoRequest("x")), onEvent: heard.record)
      _ = await Probe().eventually { heard.ended }
      XCTAssertEqual(heard.ends.withLockedValue { $0.count }, 1)
      XCTAssertEqual(heard.ends.withLockedValue { $0.first??.code }, .unimplemented)
    }
    try await server.drain()
  }

  func testCancelStopsTheServersHandlerAndFreesTheSlot() async throws {
    let probe = Probe()
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: probe)])
    try await withTransport([server.target]) { transport in
      let heard = Heard()
      let watch = try await transport.watch(
        descriptor: Bench_V1_EchoService.Method.ServerStream.descriptor, metadata: [:],
        request: try self.request(echoRequest("slow:5", count: 100_000)), onEvent: heard.record)
      _ = await probe.eventually { heard.messages.withLockedValue { $0.count } >= 3 }
      watch.cancel()
      watch.cancel()  // a second cancel does nothing
      let cancelled = await probe.eventually { probe.cancelCount == 1 }
      XCTAssertTrue(cancelled, "the server's handler was cancelled")
      // The connection's slot is free again: another watch runs to its end.
      let next = Heard()
      _ = try await transport.watch(
        descriptor: Bench_V1_EchoService.Method.ServerStream.descriptor, metadata: [:], request: try self.request(echoRequest("y", count: 2)),
        onEvent: next.record)
      _ = await probe.eventually { next.ended }
      XCTAssertEqual(next.messages.withLockedValue { $0.count }, 2)
    }
    try await server.drain()
  }

  func testNoReachableReplicaThrowsInsteadOfStarting() async throws {
    let server = try await FramedTestServer(services: [ControlledEchoService(probe: Probe())])
    let target = server.target
    try await server.drain()
    try await withTransport([target]) { transport in
      do {
        _ = try await transport.watch(
          descriptor: Bench_V1_EchoService.Method.ServerStream.descriptor, metadata: [:], request: try self.request(echoRequest("x")),
          onEvent: { _ in XCTFail("no event for a call that never started") })
        XCTFail("expected UNAVAILABLE")
      } catch let error as RPCError {
        XCTAssertEqual(error.code, .unavailable)
      }
    }
  }
}
