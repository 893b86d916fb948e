import FramedTransport
import GRPCCore
import QuizwireProtos
import XCTest

final class ClientCancellationTests: XCTestCase {
  /// A call waiting for a replica that never comes up ends at its deadline: the pool wait
  /// and the stream waits honour task cancellation.
  func testWaitForReadyCallEndsAtItsDeadline() async throws {
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(host: "127.0.0.1", port: 1)]))
    try await withGRPCClient(transport: transport) { client in
      let echo = Bench_V1_EchoService.Client(wrapping: client)
      var options = CallOptions.defaults
      options.waitForReady = true
      options.timeout = .milliseconds(200)
      let start = ContinuousClock.now
      do {
        _ = try await echo.unary(.init(), options: options)
        XCTFail("nothing listens on port 1")
      } catch let error as RPCError {
        XCTAssertEqual(error.code, .deadlineExceeded)
      }
      XCTAssertLessThan(ContinuousClock.now - start, .seconds(3), "ended at its deadline, not after reconnect attempts")
    }
  }
}
