import Gateway
import XCTest

/// The CORS and conditional-request decisions without sockets.
final class CORSPolicyTests: XCTestCase {
  let policy = CORSPolicy(origins: ["https://app.example.com", "http://localhost:3000"])

  func testAnAllowedPreflightEchoesTheOriginAndTheRoutesVerbs() throws {
    let result = self.policy.preflight(
      origin: "https://app.example.com", requestMethod: "PATCH", requestHeaders: "authorization, content-type, if-match",
      methods: ["DELETE", "GET", "PATCH"])
    let headers = Dictionary(try result.get().map { ($0.name, $0.value) }) { $1 }
    XCTAssertEqual(headers["Access-Control-Allow-Origin"], "https://app.example.com", "echoed, never *")
    XCTAssertEqual(headers["Access-Control-Allow-Methods"], "DELETE, GET, PATCH")
    XCTAssertEqual(headers["Access-Control-Max-Age"], "600")
    let allowed = try XCTUnwrap(headers["Access-Control-Allow-Headers"]).components(separatedBy: ", ")
    for name in ["Authorization", "Content-Type", "X-API-Key", "X-Request-Id", "If-Match", "If-None-Match", "Idempotency-Key"] {
      XCTAssertTrue(allowed.contains(name), name)
    }
    XCTAssertNil(headers["Access-Control-Allow-Credentials"], "the API takes no cookies")
  }

  func testOriginsCompareCaseInsensitivelyAndExactly() {
    XCTAssertTrue(self.policy.allows("HTTPS://APP.example.com"))
    XCTAssertFalse(self.policy.allows("https://app.example.com.evil.test"))
    XCTAssertFalse(self.policy.allows("http://app.example.com"), "another scheme is another origin")
    XCTAssertFalse(self.policy.allows("http://localhost:3001"), "another port is another origin")
    XCTAssertFalse(self.policy.allows("null"))
    XCTAssertFalse(self.policy.allows(nil))
    XCTAssertFalse(CORSPolicy(origins: []).allows("https://app.example.com"), "empty list: no cross-origin access")
  }

  func testPreflightsAreRefusedForOtherOriginsVerbsAndHeaders() {
    func refused(_ origin: String, _ method: String, _ headers: String?) -> String? {
      if case .failure(let refusal) = self.policy.preflight(origin: origin, requestMethod: method, requestHeaders: headers, methods: ["GET", "POST"]) {
        return refusal.message
      }
      return nil
    }
    XCTAssertNotNil(refused("https://evil.test", "GET", nil))
    XCTAssertEqual(refused("https://app.example.com", "DELETE", nil)?.contains("DELETE is not allowed"), true)
    XCTAssertEqual(refused("https://app.example.com", "POST", "content-type, x-secret")?.contains("x-secret"), true)
    XCTAssertNil(refused("https://app.example.com", "POST", "Content-Type, Idempotency-Key"))
  }

  func testActualResponsesGetCORSHeadersOnlyForAnAllowedOrigin() {
    let allowed = Dictionary(self.policy.responseHeaders(origin: "http://localhost:3000").map { ($0.name, $0.value) }) { $1 }
    XCTAssertEqual(allowed["Access-Control-Allow-Origin"], "http://localhost:3000")
    XCTAssertEqual(allowed["Vary"], "Origin")
    XCTAssertEqual(
      allowed["Access-Control-Expose-Headers"],
      "X-Request-Id, ETag, Location, Link, Retry-After, RateLimit-Policy, RateLimit, X-RateLimit-Limit, X-RateLimit-Remaining, "
        + "X-RateLimit-Reset, Idempotent-Replayed")
    XCTAssertEqual(self.policy.responseHeaders(origin: "https://evil.test").map(\.name), ["Vary"])
    XCTAssertEqual(self.policy.responseHeaders(origin: nil).map(\.name), ["Vary"], "a cache must not reuse it for an allowed origin")
    XCTAssertTrue(CORSPolicy(origins: []).responseHeaders(origin: "https://evil.test").isEmpty)
  }

  func testTheSettingTakesOnlyExplicitOrigins() throws {
    XCTAssertEqual(try CORSPolicy.parse(" https://App.example.com/ , http://localhost:3000"), ["https://app.example.com", "http://localhost:3000"])
    XCTAssertEqual(try CORSPolicy.parse(""), [])
    for bad in ["*", "null", "app.example.com", "https://app.example.com/path", "https://*.example.com", "ftp://x.test"] {
      XCTAssertThrowsError(try CORSPolicy.parse(bad), bad)
    }
  }

  func testEntityTagsAndTheNextLink() {
    XCTAssertEqual(ConditionalRequests.entityTag("abc-1"), "\"abc-1\"")
    XCTAssertNil(ConditionalRequests.entityTag("a\"b"))
    XCTAssertNil(ConditionalRequests.entityTag(""))
    XCTAssertEqual(ConditionalRequests.ifMatch(" \"v2\" "), .etag("v2"))
    XCTAssertEqual(ConditionalRequests.ifMatch("*"), .any)
    XCTAssertNil(ConditionalRequests.ifMatch("W/\"v2\""), "If-Match compares strongly")
    XCTAssertNil(ConditionalRequests.ifMatch("\"v1\", \"v2\""), "one etag per write")
    XCTAssertTrue(ConditionalRequests.noneMatchMatches("\"v1\", W/\"v2\"", etag: "v2"))
    XCTAssertTrue(ConditionalRequests.noneMatchMatches("*", etag: "v2"))
    XCTAssertFalse(ConditionalRequests.noneMatchMatches("\"v1\"", etag: "v2"))
    XCTAssertEqual(
      ConditionalRequests.nextLink(path: "/api/v1/quizzes", query: [("limit", "2"), ("cursor", "old"), ("sort", "create_time desc")], cursor: "a+b=/c&"),
      "</api/v1/quizzes?limit=2&sort=create_time%20desc&cursor=a%2Bb%3D%2Fc%26>; rel=\"next\"")
  }
}
