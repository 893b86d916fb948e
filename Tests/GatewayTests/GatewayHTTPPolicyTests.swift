import Foundation
import XCTest

/// CORS, security and caching headers through the real gateway in front of real services.
final class GatewayHTTPPolicyTests: XCTestCase {
  static let app = "https://app.example.com"

  func testPreflightsAndHeadersOnEveryResponse() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: ["cors-origins": Self.app])
    do {
      // An allowed origin's preflight: 204 with the route's verbs from the table, cacheable.
      let preflight = try await suite.request(
        "OPTIONS", "/api/v1/quizzes/q-1",
        headers: ["Origin": Self.app, "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "authorization, if-match"])
      XCTAssertEqual(preflight.status, 204, String(decoding: preflight.body, as: UTF8.self))
      XCTAssertEqual(preflight.header("Access-Control-Allow-Origin"), Self.app)
      XCTAssertEqual(preflight.header("Access-Control-Allow-Methods"), "DELETE, GET, PATCH")
      XCTAssertEqual(preflight.header("Access-Control-Max-Age"), "600")
      XCTAssertTrue(preflight.header("Access-Control-Allow-Headers")?.contains("Idempotency-Key") == true)
      XCTAssertEqual(preflight.header("Vary"), "Origin")
      XCTAssertNotNil(preflight.header("X-Request-Id"))

      // Another origin's preflight is refused in the envelope, with no CORS headers.
      let refused = try await suite.request(
        "OPTIONS", "/api/v1/quizzes", headers: ["Origin": "https://evil.test", "Access-Control-Request-Method": "POST"])
      XCTAssertEqual(refused.status, 403, String(decoding: refused.body, as: UTF8.self))
      XCTAssertEqual(refused.error?["status"] as? String, "PERMISSION_DENIED")
      XCTAssertEqual(refused.meta?["request_id"] as? String, refused.header("X-Request-Id"))
      XCTAssertNil(refused.header("Access-Control-Allow-Origin"))
      XCTAssertEqual(refused.header("Cache-Control"), "no-store")

      // Actual responses: CORS for the allowed origin only; security headers for everyone.
      let allowed = try await suite.request("GET", "/api/v1/quizzes", headers: ["Origin": Self.app])
      XCTAssertEqual(allowed.status, 200, String(decoding: allowed.body, as: UTF8.self))
      XCTAssertEqual(allowed.header("Access-Control-Allow-Origin"), Self.app)
      XCTAssertEqual(
        allowed.header("Access-Control-Expose-Headers"),
        "X-Request-Id, ETag, Location, Link, Retry-After, RateLimit-Policy, RateLimit, X-RateLimit-Limit, X-RateLimit-Remaining, "
          + "X-RateLimit-Reset, Idempotent-Replayed")
      XCTAssertEqual(allowed.header("X-Content-Type-Options"), "nosniff")
      XCTAssertEqual(allowed.header("Referrer-Policy"), "no-referrer")
      XCTAssertNil(allowed.header("Strict-Transport-Security"), "plain HTTP: a browser would ignore it (RFC 6797 §8.1)")
      XCTAssertNil(allowed.header("Cache-Control"), "an anonymous success may be cached")
      let other = try await suite.request("GET", "/api/v1/quizzes", headers: ["Origin": "https://evil.test"])
      XCTAssertEqual(other.status, 200)
      XCTAssertTrue(other.headers.keys.allSatisfy { !$0.lowercased().hasPrefix("access-control-") }, "\(other.headers)")
      XCTAssertEqual(other.header("X-Content-Type-Options"), "nosniff")

      // A caller's own data and errors are never stored by a shared cache.
      let token = try await suite.signIn("cors@example.com", name: "Cors")
      let me = try await suite.request("GET", "/api/v1/me", bearer: token)
      XCTAssertEqual(me.status, 200)
      XCTAssertEqual(me.header("Cache-Control"), "no-store")
      let missing = try await suite.request("GET", "/api/v1/nowhere")
      XCTAssertEqual(missing.status, 404)
      XCTAssertEqual(missing.header("Cache-Control"), "no-store")
      XCTAssertEqual(missing.header("Referrer-Policy"), "no-referrer")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testWithoutAnAllowListNoOriginGetsCORS() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let preflight = try await suite.request(
        "OPTIONS", "/api/v1/quizzes", headers: ["Origin": Self.app, "Access-Control-Request-Method": "GET"])
      XCTAssertEqual(preflight.status, 403)
      let read = try await suite.request("GET", "/api/v1/quizzes", headers: ["Origin": Self.app])
      XCTAssertNil(read.header("Access-Control-Allow-Origin"))
      XCTAssertNil(read.header("Vary"))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testLinkETagNotModifiedAndStaleIfMatch() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let token = try await suite.signIn("etag@example.com", name: "Etag")
      var ids: [String] = []
      for _ in 0..<3 {
        let created = try await suite.request("POST", "/api/v1/quizzes", json: GatewayEndToEndTests.quizBody, bearer: token)
        XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
        ids.append(try XCTUnwrap(created.data?["id"] as? String))
      }

      // A page with more after it links to the next one: same query, the cursor replaced.
      let page1 = try await suite.request("GET", "/api/v1/quizzes?limit=2&sort=create_time%20desc", bearer: token)
      XCTAssertEqual(page1.status, 200, String(decoding: page1.body, as: UTF8.self))
      let cursor = try XCTUnwrap((page1.meta?["pagination"] as? [String: Any])?["next_cursor"] as? String)
      let link = try XCTUnwrap(page1.header("Link"))
      XCTAssertTrue(link.hasPrefix("</api/v1/quizzes?limit=2&sort=create_time%20desc&cursor="), link)
      XCTAssertTrue(link.hasSuffix(">; rel=\"next\""), link)
      let next = String(link.dropFirst().prefix { $0 != ">" })
      let page2 = try await suite.request("GET", next, bearer: token)
      XCTAssertEqual(page2.status, 200, String(decoding: page2.body, as: UTF8.self))
      let seen = Set(((page1.list ?? []) + (page2.list ?? [])).compactMap { $0["id"] as? String })
      XCTAssertTrue(Set(ids).isSubset(of: seen), "the link reaches the rest")
      XCTAssertFalse(cursor.isEmpty)
      XCTAssertNil(page2.header("Link"), "the last page links nowhere")

      // A read carries the etag; If-None-Match with it is 304 without a body.
      let id = ids[0]
      let read = try await suite.request("GET", "/api/v1/quizzes/\(id)", bearer: token)
      let etag = try XCTUnwrap(read.data?["etag"] as? String)
      XCTAssertEqual(read.header("ETag"), "\"\(etag)\"")
      let cached = try await suite.request("GET", "/api/v1/quizzes/\(id)", bearer: token, headers: ["If-None-Match": "\"\(etag)\""])
      XCTAssertEqual(cached.status, 304)
      XCTAssertTrue(cached.body.isEmpty)
      XCTAssertEqual(cached.header("ETag"), "\"\(etag)\"")
      XCTAssertNotNil(cached.header("X-Request-Id"))
      let changed = try await suite.request("GET", "/api/v1/quizzes/\(id)", bearer: token, headers: ["If-None-Match": "\"other\""])
      XCTAssertEqual(changed.status, 200)

      // If-Match with the current etag writes; the old one is then stale: 412, not 409.
      let patched = try await suite.request(
        "PATCH", "/api/v1/quizzes/\(id)", json: #"{"title":"First"}"#, bearer: token, headers: ["If-Match": "\"\(etag)\""])
      XCTAssertEqual(patched.status, 200, String(decoding: patched.body, as: UTF8.self))
      let newTag = try XCTUnwrap(patched.data?["etag"] as? String)
      XCTAssertNotEqual(newTag, etag)
      XCTAssertEqual(patched.header("ETag"), "\"\(newTag)\"")
      let stale = try await suite.request(
        "PATCH", "/api/v1/quizzes/\(id)", json: #"{"title":"Second"}"#, bearer: token, headers: ["If-Match": "\"\(etag)\""])
      XCTAssertEqual(stale.status, 412, String(decoding: stale.body, as: UTF8.self))
      XCTAssertEqual(stale.error?["reason"] as? String, "ETAG_MISMATCH")
      XCTAssertEqual(stale.error?["code"] as? Int, 412)
      // The same stale etag as a query parameter (no If-Match) is a plain conflict: 409.
      let staleQuery = try await suite.request("DELETE", "/api/v1/quizzes/\(id)?etag=\(etag)", bearer: token)
      XCTAssertEqual(staleQuery.status, 409, String(decoding: staleQuery.body, as: UTF8.self))
      let stalePublish = try await suite.request("POST", "/api/v1/quizzes/\(id)/publish", bearer: token, headers: ["If-Match": "\"\(etag)\""])
      XCTAssertEqual(stalePublish.status, 412, String(decoding: stalePublish.body, as: UTF8.self))
      let staleDelete = try await suite.request("DELETE", "/api/v1/quizzes/\(id)", bearer: token, headers: ["If-Match": "\"\(etag)\""])
      XCTAssertEqual(staleDelete.status, 412, String(decoding: staleDelete.body, as: UTF8.self))
      let weak = try await suite.request("DELETE", "/api/v1/quizzes/\(id)", bearer: token, headers: ["If-Match": "W/\"\(newTag)\""])
      XCTAssertEqual(weak.status, 400)
      let deleted = try await suite.request("DELETE", "/api/v1/quizzes/\(id)", bearer: token, headers: ["If-Match": "\"\(newTag)\""])
      XCTAssertEqual(deleted.status, 204, String(decoding: deleted.body, as: UTF8.self))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }
}
