import FramedTransport
import GRPCCore
import QuizwireProtos
import ServiceKit
import XCTest

/// What `ServiceClientConfig` turns into: the per-method configuration GRPCCore applies.
final class ServiceClientConfigTests: XCTestCase {
  func testUntimedMethodsGetNoDefaultDeadlineWhileOthersKeepIt() throws {
    let unary = Bench_V1_EchoService.Method.Unary.descriptor
    let stream = Bench_V1_EchoService.Method.ServerStream.descriptor
    var config = ServiceClientConfig(replicas: ["127.0.0.1:1"])
    config.defaultTimeout = .seconds(10)
    config.idempotentMethods = [unary]
    config.untimedMethods = [stream]
    let client = try ServiceClient(config)
    XCTAssertEqual(client.transport.config(forMethod: unary)?.timeout, .seconds(10))
    XCTAssertNotNil(client.transport.config(forMethod: unary)?.executionPolicy)
    let untimed = try XCTUnwrap(client.transport.config(forMethod: stream), "the exact method's config is found")
    XCTAssertNil(untimed.timeout, "a long-lived stream gets no deadline of 10 s")
    XCTAssertNil(untimed.executionPolicy)
    XCTAssertEqual(client.transport.config(forMethod: Bench_V1_EchoService.Method.Bidi.descriptor)?.timeout, .seconds(10))
  }

  func testTheHTTP2ClientTakesIPv4ReplicasAndOneNameButNotSeveralNames() throws {
    XCTAssertNoThrow(try HTTP2ServiceClient(ServiceClientConfig(replicas: ["127.0.0.1:1", "127.0.0.2:2"])))
    XCTAssertNoThrow(try HTTP2ServiceClient(ServiceClientConfig(replicas: ["localhost:1"])))
    XCTAssertThrowsError(try HTTP2ServiceClient(ServiceClientConfig(replicas: ["a.example:1", "b.example:1"])))
    XCTAssertThrowsError(try HTTP2ServiceClient(ServiceClientConfig(replicas: ["no-port"])))
  }
}
