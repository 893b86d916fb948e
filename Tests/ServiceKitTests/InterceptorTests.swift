import Foundation
import GRPCCore
import GRPCProtobuf
import Logging
import ServiceContextModule
import XCTest

@testable import ServiceKit

final class InterceptorTests: XCTestCase {
  func testRequestIDIsAcceptedOrMadeAndEchoed() async throws {
    let seen = Collector<String>()
    let handler = Harness.unary { (m: String) -> String in
      try await seen.write(ServiceContext.current?.call?.requestID ?? "none")
      return m
    }
    let given = await Harness.run([RequestIDInterceptor()], metadata: ["x-request-id": "abc-123"], messages: ["hi"], handler: handler)
    XCTAssertEqual(given.initialMetadata.first("x-request-id"), "abc-123")
    XCTAssertEqual(seen.items.last, "abc-123")

    // A value that could forge a log line is replaced by a fresh id.
    let forged = await Harness.run([RequestIDInterceptor()], metadata: ["x-request-id": "a\"b c"], messages: ["hi"], handler: handler)
    let made = try XCTUnwrap(forged.initialMetadata.first("x-request-id"))
    XCTAssertNotEqual(made, "a\"b c")
    XCTAssertEqual(made.count, 36)
    XCTAssertEqual(seen.items.last, made)

    // Errors carry it too.
    let failing = await Harness.run(
      [RequestIDInterceptor()], metadata: ["x-request-id": "err-1"], messages: ["x"],
      handler: Harness.unary { (_: String) -> String in throw RPCError(code: .notFound, message: "nope") })
    XCTAssertEqual(failing.error?.code, .notFound)
    XCTAssertEqual(failing.trailers.first("x-request-id"), "err-1")
  }

  func testAccessLogWritesOneJSONLinePerCallWithoutCredentials() async throws {
    let log = CapturedLog()
    let logger = Logger(label: "svc") { JSONLogHandler(label: $0, sink: log.sink) }
    let interceptors: [any ServerInterceptor] = [RequestIDInterceptor(), AccessLogInterceptor(logger: logger, service: "test")]
    _ = await Harness.run(
      interceptors, metadata: ["x-request-id": "r-1", "authorization": "Bearer secret-token-value"],
      messages: ["a"], handler: Harness.unary { (m: String) in m })
    _ = await Harness.run(
      interceptors, metadata: ["x-request-id": "r-2"], messages: ["a"],
      handler: Harness.unary { (_: String) -> String in throw RPCError(code: .permissionDenied, message: "no") })
    let entries = log.entries()
    XCTAssertEqual(entries.count, 2)
    XCTAssertEqual(entries[0]["request_id"] as? String, "r-1")
    XCTAssertEqual(entries[0]["status"] as? String, "OK")
    XCTAssertEqual(entries[0]["method"] as? String, "test.v1.Probe/Call")
    XCTAssertNotNil(entries[0]["duration_ms"] as? Double)
    XCTAssertEqual(entries[1]["status"] as? String, "PERMISSION_DENIED")
    XCTAssertEqual(entries[1]["code"] as? Int, 7)
    XCTAssertFalse(log.rawLines().joined().contains("secret-token-value"))
  }

  func testAccessLogCoversStreamingProducer() async throws {
    let log = CapturedLog()
    let logger = Logger(label: "svc") { JSONLogHandler(label: $0, sink: log.sink) }
    let outcome = await Harness.run(
      [RequestIDInterceptor(), AccessLogInterceptor(logger: logger, service: "test")], messages: ["a"]
    ) { (_: StreamingServerRequest<String>, _) in
      StreamingServerResponse(of: String.self) { writer in
        // The log line must not be written before the stream ends.
        XCTAssertTrue(log.entries().isEmpty)
        XCTAssertNotNil(ServiceContext.current?.call, "call info must reach streaming producers")
        try await writer.write("one")
        throw RPCError(code: .aborted, message: "midway")
      }
    }
    XCTAssertEqual(outcome.messages, ["one"])
    XCTAssertEqual(log.entries().count, 1)
    XCTAssertEqual(log.entries().first?["status"] as? String, "ABORTED")
  }

  func testMetricsCountCallsByCodeAndMessages() async throws {
    let metrics = HostMetrics()
    let interceptors: [any ServerInterceptor] = [MetricsInterceptor(metrics: metrics)]
    for _ in 0..<3 { _ = await Harness.run(interceptors, messages: ["a"], handler: Harness.unary { (m: String) in m }) }
    _ = await Harness.run(
      interceptors, messages: ["a"],
      handler: Harness.unary { (_: String) -> String in throw RPCError(code: .notFound, message: "") })
    let text = metrics.exposition()
    XCTAssertTrue(text.contains(#"rpc_server_requests_total{service="test.v1.Probe",method="Call",code="OK"} 3"#), text)
    XCTAssertTrue(text.contains(#"rpc_server_requests_total{service="test.v1.Probe",method="Call",code="NOT_FOUND"} 1"#), text)
    XCTAssertTrue(text.contains(#"rpc_server_messages_received_total{service="test.v1.Probe",method="Call"} 4"#), text)
    XCTAssertTrue(text.contains(#"rpc_server_messages_sent_total{service="test.v1.Probe",method="Call"} 3"#), text)
    XCTAssertTrue(text.contains(#"rpc_server_in_flight{service="test.v1.Probe",method="Call"} 0"#), text)
    XCTAssertTrue(text.contains("rpc_server_duration_seconds_bucket"), text)
  }

  func testDefaultDeadlineCancelsSlowHandlers() async throws {
    let deadline = DeadlineInterceptor(fallback: .milliseconds(50))
    let slow = await Harness.run(
      [RequestIDInterceptor(), deadline], messages: ["a"],
      handler: Harness.unary { (m: String) -> String in
        try await Task.sleep(for: .seconds(5))
        return m
      })
    XCTAssertEqual(slow.error?.code, .deadlineExceeded)

    // A caller's own deadline is recorded for propagation (GRPCCore enforces it).
    let budget = Collector<Double>()
    _ = await Harness.run(
      [RequestIDInterceptor(), deadline], metadata: ["grpc-timeout": "2S"], messages: ["a"],
      handler: Harness.unary { (m: String) -> String in
        let remaining = ContinuousClock.now.duration(to: ServiceContext.current!.call!.deadline!)
        try await budget.write(Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18)
        return m
      })
    let left = try XCTUnwrap(budget.items.first)
    XCTAssertGreaterThan(left, 1.5)
    XCTAssertLessThanOrEqual(left, 2.0)
  }

  func testGRPCTimeoutTextRoundTrips() {
    XCTAssertEqual(GRPCTimeout.parse("100m"), .milliseconds(100))
    XCTAssertEqual(GRPCTimeout.parse("3S"), .seconds(3))
    XCTAssertEqual(GRPCTimeout.parse("2H"), .seconds(7200))
    XCTAssertNil(GRPCTimeout.parse("123456789S"))
    XCTAssertNil(GRPCTimeout.parse("10x"))
    XCTAssertNil(GRPCTimeout.parse("-1S"))
    XCTAssertEqual(GRPCTimeout.parse(GRPCTimeout.format(.milliseconds(1500))), .milliseconds(1500))
    XCTAssertEqual(GRPCTimeout.format(.seconds(200)), "200000m")
  }

  func testRateLimitPerPrincipalWithRetryHint() async throws {
    let limiter = RateLimiter(defaultLimit: RateLimit(perSecond: 1, burst: 2))
    let interceptors: [any ServerInterceptor] = [RequestIDInterceptor(), RateLimitInterceptor(limiter: limiter)]
    let handler = Harness.unary { (m: String) in m }
    var codes: [RPCError.Code?] = []
    for _ in 0..<3 { codes.append(await Harness.run(interceptors, messages: ["a"], peer: "ipv4:10.0.0.1:1000", handler: handler).error?.code) }
    XCTAssertEqual(codes, [nil, nil, .resourceExhausted])
    let denied = await Harness.run(interceptors, messages: ["a"], peer: "ipv4:10.0.0.1:2000", handler: handler)
    XCTAssertEqual(denied.error?.code, .resourceExhausted, "same address, other port: same bucket")
    let hint = try XCTUnwrap(denied.trailers.first(RateLimitInterceptor.retryAfterKey).flatMap(Int.init))
    XCTAssertGreaterThan(hint, 0)
    XCTAssertLessThanOrEqual(hint, 1000)
    let status = try XCTUnwrap(try denied.error?.unpackGoogleRPCStatus())
    XCTAssertNotNil(status.details.first?.retryInfo)
    // Another caller has its own bucket.
    let other = await Harness.run(interceptors, messages: ["a"], peer: "ipv4:10.0.0.2:1000", handler: handler)
    XCTAssertNil(other.error)
  }

  func testForwardedAddressesKeyAnonymousCallersOnlyFromTrustedProxies() async throws {
    let limiter = RateLimiter(defaultLimit: RateLimit(perSecond: 0.001, burst: 1))
    let trusted = try TrustedProxies("10.1.0.0/16, ::1")
    let interceptors: [any ServerInterceptor] = [RateLimitInterceptor(limiter: limiter, trustedProxies: trusted)]
    let handler = Harness.unary { (m: String) in m }
    func call(from peer: String, forwardedFor: String?) async -> RPCError.Code? {
      var metadata: Metadata = [:]
      if let forwardedFor { metadata.addString(forwardedFor, forKey: "x-forwarded-for") }
      return await Harness.run(interceptors, metadata: metadata, messages: ["a"], peer: peer, handler: handler).error?.code
    }
    // (peer, x-forwarded-for, expected code, why)
    let cases: [(String, String, RPCError.Code?, String)] = [
      // Behind the gateway (trusted): one bucket per browser, not one for the gateway.
      ("ipv4:10.1.2.3:4000", "203.0.113.7", nil, "first browser"),
      ("ipv4:10.1.9.9:4001", "203.0.113.8", nil, "second browser, own bucket"),
      ("ipv4:10.1.2.3:4002", "203.0.113.7", .resourceExhausted, "first browser again"),
      // The entry the proxy added is the last one; what the browser claimed before it is ignored.
      ("ipv4:10.1.2.3:4003", "198.51.100.1, 203.0.113.7", .resourceExhausted, "spoofed first entry"),
      ("ipv6:[::1]:4004", "203.0.113.9", nil, "trusted IPv6 proxy"),
      // From anywhere else the header changes nothing: a caller can't pick a fresh bucket.
      ("ipv4:192.0.2.1:5000", "203.0.113.10", nil, "untrusted peer"),
      ("ipv4:192.0.2.1:5001", "203.0.113.11", .resourceExhausted, "untrusted peer, other claimed address"),
      ("ipv4:10.2.0.1:5002", "203.0.113.12", nil, "10.2/16 is not trusted: its own bucket"),
      ("ipv4:10.2.0.1:5003", "203.0.113.13", .resourceExhausted, "10.2/16 again"),
    ]
    for (peer, forwarded, expected, why) in cases {
      let code = await call(from: peer, forwardedFor: forwarded)
      XCTAssertEqual(code, expected, why)
    }

    XCTAssertThrowsError(try TrustedProxies("10.0.0.0/33"))
    XCTAssertThrowsError(try TrustedProxies("not-an-ip"))
    XCTAssertTrue(try TrustedProxies("").isEmpty)
  }

  func testRateLimiterStaysBounded() {
    let limiter = RateLimiter(defaultLimit: RateLimit(perSecond: 10, burst: 10), maxKeys: 100)
    for i in 0..<1000 { _ = limiter.take(key: "k\(i)") }
    XCTAssertLessThanOrEqual(limiter.trackedKeys, 100)
  }

  func testValidationFailsWithFieldViolations() async throws {
    struct Form: ValidatableMessage, Sendable {
      var email: String
      var age: Int
      func validate(into v: inout FieldViolations) {
        v.require(self.email.contains("@"), "email", "must be an email address")
        v.require(self.age >= 0, "age", "must not be negative")
      }
    }
    let handler = Harness.unary { (f: Form) in f.email }
    let bad = await Harness.run([ValidationInterceptor()], messages: [Form(email: "nope", age: -1)], handler: handler)
    XCTAssertEqual(bad.error?.code, .invalidArgument)
    let status = try XCTUnwrap(try bad.error?.unpackGoogleRPCStatus())
    let violations = try XCTUnwrap(status.details.first?.badRequest).violations
    XCTAssertEqual(violations.map(\.field), ["email", "age"])
    let good = await Harness.run([ValidationInterceptor()], messages: [Form(email: "a@b.c", age: 3)], handler: handler)
    XCTAssertNil(good.error)
    XCTAssertEqual(good.messages, ["a@b.c"])
  }

  func testFieldViolationPathsForNestedAndRepeatedFields() throws {
    var v = FieldViolations()
    v.require(false, "title", "is required")
    v.at("quiz") { quiz in
      quiz.at("questions", index: 3) { question in
        question.require(false, "text", "is required")
        question.at("choices", index: 1) { $0.require(false, "text", "is required") }
      }
      quiz.each("tags", ["ok", "", "also ok"]) { tag, value in tag.require(!value.isEmpty, "", "must not be empty") }
      quiz.require(true, "never", "not added")
    }
    v.add("after", "scope restored")
    XCTAssertEqual(
      v.violations.map(\.field),
      [
        "title", "quiz.questions[3].text", "quiz.questions[3].choices[1].text", "quiz.tags[1]", "after",
      ])
    XCTAssertEqual(v.scope, "")
    XCTAssertEqual(v.path("a", index: 0), "a[0]")
    v.at("outer") { XCTAssertEqual($0.path("inner"), "outer.inner") }
    // The error carries them all, in order.
    let status = try XCTUnwrap(try v.error().unpackGoogleRPCStatus())
    XCTAssertEqual(status.code, .invalidArgument)
    XCTAssertEqual(status.details.first?.badRequest?.violations.map(\.field), v.violations.map(\.field))
  }

  func testAuditLogWritesOneStructuredLineOnItsOwnLogger() async throws {
    let log = CapturedLog()
    let audit = AuditLog(sink: log.sink)
    let call = CallInfo(requestID: "r-audit", method: Harness.method, peer: "ipv4:127.0.0.1:1")
    call.principal = Principal(kind: .user, subject: "u-admin", roles: ["admin"])
    var context = ServiceContext.topLevel
    context.call = call
    await ServiceContext.withValue(context) {
      audit.record("user.set_roles", target: "u-2", details: ["roles": "author,user", "action": "forged"])
    }
    struct Refused: Error {}
    do {
      try await ServiceContext.withValue(context) {
        try await audit.recording("api_key.revoke", target: "k-1") { () async throws -> Void in
          throw RPCError(code: .permissionDenied, message: "no")
        }
      }
      XCTFail("recording rethrows")
    } catch let error as RPCError {
      XCTAssertEqual(error.code, .permissionDenied)
    }
    _ = try? await audit.recording("signing_key.rotate", target: "-") { () async throws -> Int in throw Refused() }
    audit.record("oauth_client.ensure_internal", target: "quiz", by: "system")

    let entries = log.entries()
    XCTAssertEqual(entries.count, 4)
    XCTAssertEqual(entries.map { $0["service"] as? String }, ["audit", "audit", "audit", "audit"])
    XCTAssertEqual(entries[0]["actor"] as? String, "user:u-admin")
    XCTAssertEqual(entries[0]["action"] as? String, "user.set_roles", "details never replace the fixed fields")
    XCTAssertEqual(entries[0]["target"] as? String, "u-2")
    XCTAssertEqual(entries[0]["request_id"] as? String, "r-audit")
    XCTAssertEqual(entries[0]["outcome"] as? String, "success")
    XCTAssertEqual(entries[0]["roles"] as? String, "author,user")
    XCTAssertEqual(entries[1]["outcome"] as? String, "denied")
    XCTAssertEqual(entries[2]["outcome"] as? String, "failed")
    XCTAssertEqual(entries[2]["actor"] as? String, "anonymous", "outside a call")
    XCTAssertEqual(entries[2]["request_id"] as? String, "-")
    XCTAssertEqual(entries[3]["actor"] as? String, "system")
  }

  func testTracingContinuesTheCallersTrace() async throws {
    let tracer = W3CTracer()
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    let inner = Collector<String>()
    _ = await Harness.run(
      [RequestIDInterceptor(), ServerTracingInterceptor(tracer: tracer)], metadata: ["traceparent": .string(parent)],
      messages: ["a"],
      handler: Harness.unary { (m: String) -> String in
        try await inner.write(ServiceContext.current?.traceContext?.traceParentHeaderValue ?? "none")
        return m
      })
    let span = try XCTUnwrap(tracer.sink.finished.first)
    XCTAssertEqual(span.traceID, "0af7651916cd43dd8448eb211c80319c")
    XCTAssertEqual(span.parentSpanID, "b7ad6b7169203331")
    XCTAssertNotEqual(span.spanID, "b7ad6b7169203331")
    XCTAssertEqual(span.operationName, "test.v1.Probe/Call")
    // Downstream calls see the server span as their parent.
    XCTAssertEqual(inner.items.first, "00-0af7651916cd43dd8448eb211c80319c-\(span.spanID)-01")

    // A malformed traceparent starts a fresh trace instead of failing the call.
    let fresh = await Harness.run(
      [ServerTracingInterceptor(tracer: tracer)], metadata: ["traceparent": "garbage"], messages: ["a"],
      handler: Harness.unary { (m: String) in m })
    XCTAssertNil(fresh.error)
    XCTAssertEqual(tracer.sink.finished.count, 2)
    XCTAssertNil(tracer.sink.finished[1].parentSpanID)
  }
}
