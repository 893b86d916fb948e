import GRPCCore
import Synchronization
import XCTest

@testable import ServiceKit

/// Every call is reported finished exactly once — also one whose response GRPCCore drops
/// without running its producer (a client reset before the response headers went out, as the
/// gRPC/HTTP2 transport does): that one is CANCELLED, and the in-flight gauge comes back.
final class CallObservationTests: XCTestCase {
  final class Codes: Sendable {
    let seen = Mutex<[Status.Code]>([])
    var all: [Status.Code] { self.seen.withLock { $0 } }
    func add(_ code: Status.Code) { self.seen.withLock { $0.append(code) } }
  }

  static let context = ServerContext(
    descriptor: MethodDescriptor(fullyQualifiedService: "test.Service", method: "Bidi"), remotePeer: "in-process:1", localPeer: "in-process:2",
    cancellation: .init())

  func observed(_ codes: Codes) async throws -> StreamingServerResponse<String> {
    let request = StreamingServerRequest<String>(metadata: [:], messages: RPCAsyncSequence(wrapping: AsyncThrowingStream { $0.finish() }))
    return try await CallObservation.run(
      request: request, context: Self.context,
      next: { _, _ in
        StreamingServerResponse<String> { writer in
          try await writer.write("one")
          return [:]
        }
      }, finished: codes.add)
  }

  func testADroppedResponseIsFinishedCancelledOnce() async throws {
    let codes = Codes()
    do {
      let response = try await self.observed(codes)
      XCTAssertNotNil(try? response.accepted.get())
      XCTAssertEqual(codes.all, [], "not finished while the response may still run")
    }
    // The response and its producer are gone without the producer having run.
    XCTAssertEqual(codes.all, [.cancelled])
  }

  func testARunProducerIsFinishedOnceWithItsCode() async throws {
    let codes = Codes()
    do {
      let response = try await self.observed(codes)
      let contents = try response.accepted.get()
      let (stream, continuation) = AsyncStream<String>.makeStream()
      _ = try await contents.producer(RPCWriter(wrapping: StreamWriter(continuation: continuation)))
      continuation.finish()
      var written: [String] = []
      for await message in stream { written.append(message) }
      XCTAssertEqual(written, ["one"])
    }
    XCTAssertEqual(codes.all, [.ok], "finished once, not again when the producer is released")
  }

  struct StreamWriter: RPCWriterProtocol {
    let continuation: AsyncStream<String>.Continuation
    func write(_ element: String) async throws { self.continuation.yield(element) }
    func write(contentsOf elements: some Sequence<String>) async throws { for e in elements { self.continuation.yield(e) } }
  }
}
