import GRPCCore
import Logging
import XCTest

@testable import ServiceKit

/// `ErrorConversionInterceptor`: errors without a status become INTERNAL with an error id that
/// leads to exactly one log line with the cause; errors with a status keep it.
final class ErrorConversionTests: XCTestCase {
  /// A handler's own error, with internals in its description.
  struct Boom: Error, CustomStringConvertible {
    var description: String { "boom: table quiz_answers is locked" }
  }

  /// A handler's error that knows its status.
  struct QuizNotFound: Error, RPCErrorConvertible {
    var rpcErrorCode: RPCError.Code { .notFound }
    var rpcErrorMessage: String { "no such quiz" }
  }

  /// Request id outermost, the access log around, error conversion innermost — as the stack has them.
  func interceptors(_ log: CapturedLog) -> [any ServerInterceptor] {
    let logger = Logger(label: "svc") { JSONLogHandler(label: $0, sink: log.sink) }
    return [RequestIDInterceptor(), AccessLogInterceptor(logger: logger, service: "test"), ErrorConversionInterceptor(logger: logger, service: "test")]
  }

  /// The error id of a converted error; fails unless the message is exactly the id sentence.
  func errorID(of error: RPCError?, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let error = try XCTUnwrap(error, "the call should have failed", file: file, line: line)
    XCTAssertEqual(error.code, .internalError, file: file, line: line)
    let prefix = "internal error (error id ", suffix = ")"
    XCTAssertTrue(error.message.hasPrefix(prefix) && error.message.hasSuffix(suffix), error.message, file: file, line: line)
    let id = String(error.message.dropFirst(prefix.count).dropLast(suffix.count))
    XCTAssertEqual(id.count, 12, id, file: file, line: line)
    XCTAssertTrue(id.allSatisfy(\.isHexDigit), id, file: file, line: line)
    XCTAssertFalse(error.message.contains("quiz_answers"), "internals must not reach the caller", file: file, line: line)
    return id
  }

  func unhandled(_ log: CapturedLog) -> [[String: Any]] { log.entries().filter { $0["message"] as? String == "unhandled error" } }
  func accessLog(_ log: CapturedLog) -> [[String: Any]] { log.entries().filter { $0["message"] as? String == "rpc" } }

  func testPlainErrorBecomesInternalWithAnIDLoggedOnceWithTheCause() async throws {
    let log = CapturedLog()
    let outcome = await Harness.run(
      self.interceptors(log), metadata: ["x-request-id": "req-42"], messages: ["a"],
      handler: Harness.unary { (_: String) -> String in throw Boom() })
    let id = try self.errorID(of: outcome.error)
    XCTAssertEqual(outcome.trailers.first("x-request-id"), "req-42")

    let lines = self.unhandled(log)
    XCTAssertEqual(lines.count, 1)
    let line = try XCTUnwrap(lines.first)
    XCTAssertEqual(line["level"] as? String, "error")
    XCTAssertEqual(line["error_id"] as? String, id)
    XCTAssertEqual(line["request_id"] as? String, "req-42")
    XCTAssertEqual(line["error"] as? String, Boom().description)
    XCTAssertEqual(line["method"] as? String, "test.v1.Probe/Call")
    // The access log, outside, sees the converted code.
    XCTAssertEqual(self.accessLog(log).map { $0["status"] as? String }, ["INTERNAL"])

    // Every conversion gets its own id.
    let again = await Harness.run(self.interceptors(log), messages: ["a"], handler: Harness.unary { (_: String) -> String in throw Boom() })
    XCTAssertNotEqual(try self.errorID(of: again.error), id)
  }

  func testErrorFromAStreamingProducerAfterHeadersIsConvertedToo() async throws {
    let log = CapturedLog()
    let outcome = await Harness.run(self.interceptors(log), metadata: ["x-request-id": "req-stream"], messages: ["a"]) {
      (_: StreamingServerRequest<String>, _) in
      StreamingServerResponse(of: String.self) { writer in
        try await writer.write("one")
        throw Boom()
      }
    }
    XCTAssertEqual(outcome.messages, ["one"], "the error came after a message went out")
    XCTAssertEqual(outcome.initialMetadata.first("x-request-id"), "req-stream")
    let id = try self.errorID(of: outcome.error)
    let lines = self.unhandled(log)
    XCTAssertEqual(lines.count, 1)
    XCTAssertEqual(lines.first?["error_id"] as? String, id)
    XCTAssertEqual(lines.first?["request_id"] as? String, "req-stream")
    XCTAssertEqual(lines.first?["error"] as? String, Boom().description)
    XCTAssertEqual(self.accessLog(log).map { $0["status"] as? String }, ["INTERNAL"])
  }

  func testErrorsWithAStatusKeepIt() async throws {
    let log = CapturedLog()
    let convertible = await Harness.run(
      self.interceptors(log), messages: ["a"],
      handler: Harness.unary { (_: String) -> String in throw QuizNotFound() })
    XCTAssertEqual(convertible.error?.code, .notFound)
    XCTAssertEqual(convertible.error?.message, "no such quiz")

    let rpc = await Harness.run(
      self.interceptors(log), messages: ["a"],
      handler: Harness.unary { (_: String) -> String in throw RPCError(code: .failedPrecondition, message: "quiz closed") })
    XCTAssertEqual(rpc.error?.code, .failedPrecondition)
    XCTAssertEqual(rpc.error?.message, "quiz closed")

    // From a streaming producer as well.
    let streamed = await Harness.run(self.interceptors(log), messages: ["a"]) { (_: StreamingServerRequest<String>, _) in
      StreamingServerResponse(of: String.self) { writer in
        try await writer.write("one")
        throw QuizNotFound()
      }
    }
    XCTAssertEqual(streamed.messages, ["one"])
    XCTAssertEqual(streamed.error?.code, .notFound)

    // A handler cancelled because its call ended stays CANCELLED in the log.
    _ = await Harness.run(self.interceptors(log), messages: ["a"], handler: Harness.unary { (_: String) -> String in throw CancellationError() })

    XCTAssertTrue(self.unhandled(log).isEmpty, "nothing was converted")
    XCTAssertEqual(self.accessLog(log).map { $0["status"] as? String }, ["NOT_FOUND", "FAILED_PRECONDITION", "NOT_FOUND", "CANCELLED"])
  }

  func testTheStandardStackConvertsInnermostSoLogsAndMetricsSeeInternal() async throws {
    let log = CapturedLog()
    let logger = Logger(label: "svc") { JSONLogHandler(label: $0, sink: log.sink) }
    let metrics = HostMetrics()
    let stack = ServerInterceptorStack(
      service: "test", logger: logger, metrics: metrics, tracer: W3CTracer(), policies: AccessPolicies(fallback: .public),
      verifier: nil, apiKeys: nil, rateLimiter: nil, deadlines: DeadlineInterceptor())
    XCTAssertTrue(stack.interceptors.last is ErrorConversionInterceptor, "error conversion is innermost")

    let outcome = await Harness.run(stack.interceptors, messages: ["a"], handler: Harness.unary { (_: String) -> String in throw Boom() })
    let id = try self.errorID(of: outcome.error)
    XCTAssertEqual(self.unhandled(log).first?["error_id"] as? String, id)
    XCTAssertEqual(self.accessLog(log).map { $0["status"] as? String }, ["INTERNAL"])
    let text = metrics.exposition()
    XCTAssertTrue(text.contains(#"rpc_server_requests_total{service="test.v1.Probe",method="Call",code="INTERNAL"} 1"#), text)
    XCTAssertFalse(text.contains(#"code="UNKNOWN""#), text)
  }
}
