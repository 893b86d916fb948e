import Foundation
import XCTest

/// Rate limits at the gateway over real HTTP: per client address, per verified user and per
/// API key, with the quota headers on every answer and 429 beyond the burst.
final class GatewayRateLimitTests: XCTestCase {
  /// A burst of 6 and a token per 100 s: nothing refills while the test runs.
  static let flags = ["rate-limit": "0.01", "rate-limit-burst": "6"]

  func testBucketsPerAddressUserAndKeyWithEveryHeader() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags)
    do {
      // Four anonymous requests from 127.0.0.1 (register and login, twice).
      let ada = try await suite.signIn("ada@example.com", name: "Ada")
      let bob = try await suite.signIn("bob@example.com", name: "Bob")

      // Allowed answers already say what is left.
      let fifth = try await suite.request("GET", "/api/v1/quizzes")
      XCTAssertEqual(fifth.header("RateLimit-Policy"), #""ip";q=6;w=600"#)
      XCTAssertEqual(fifth.header("RateLimit"), #""ip";r=1;t="# + (fifth.header("X-RateLimit-Reset") ?? "?"))
      // Five tokens short at 0.01/s is ~500 s, less the little the sign-ins took.
      XCTAssertTrue((480...500).contains(Int(fifth.header("X-RateLimit-Reset") ?? "") ?? 0), fifth.headers.description)
      XCTAssertEqual(fifth.header("X-RateLimit-Remaining"), "1")
      XCTAssertNil(fifth.header("Retry-After"))
      _ = try await suite.request("GET", "/api/v1/quizzes")

      // Beyond the burst: 429 in the envelope with every header, and no RPC made.
      let refused = try await suite.request("GET", "/api/v1/me/api-keys", headers: ["X-Request-Id": "over-the-limit"])
      XCTAssertEqual(refused.status, 429, String(decoding: refused.body, as: UTF8.self))
      XCTAssertEqual(refused.error?["status"] as? String, "RESOURCE_EXHAUSTED")
      XCTAssertEqual(refused.error?["code"] as? Int, 429)
      XCTAssertEqual(refused.error?["reason"] as? String, "RATE_LIMITED")
      // One token at 0.01/s is 100 s away, less what has refilled since the first request.
      let retryAfter = try XCTUnwrap(refused.header("Retry-After"))
      XCTAssertTrue((80...100).contains(Int(retryAfter) ?? 0), retryAfter)
      XCTAssertEqual(refused.header("RateLimit-Policy"), #""ip";q=6;w=600"#)
      XCTAssertEqual(refused.header("RateLimit"), #""ip";r=0;t=\#(retryAfter)"#)
      XCTAssertEqual(refused.header("X-RateLimit-Limit"), "6")
      XCTAssertEqual(refused.header("X-RateLimit-Remaining"), "0")
      XCTAssertEqual(refused.header("X-RateLimit-Reset"), retryAfter)
      XCTAssertEqual(refused.header("X-Request-Id"), "over-the-limit")
      XCTAssertFalse(suite.authLog.entries().contains { $0["request_id"] as? String == "over-the-limit" })

      // A verified user has a bucket of their own, apart from the address's (now empty).
      for expected in (0..<6).reversed() {
        let me = try await suite.request("GET", "/api/v1/me", bearer: ada)
        XCTAssertEqual(me.status, 200, String(decoding: me.body, as: UTF8.self))
        XCTAssertEqual(me.header("RateLimit"), #""user";r=\#(expected);t="# + me.header("X-RateLimit-Reset")!)
      }
      let adaRefused = try await suite.request("GET", "/api/v1/me", bearer: ada)
      XCTAssertEqual(adaRefused.status, 429)
      XCTAssertEqual(adaRefused.header("RateLimit-Policy"), #""user";q=6;w=600"#)
      XCTAssertTrue((80...100).contains(Int(adaRefused.header("Retry-After") ?? "") ?? 0), adaRefused.headers.description)
      // …and so does a second user.
      let bobMe = try await suite.request("GET", "/api/v1/me", bearer: bob)
      XCTAssertEqual(bobMe.status, 200)
      XCTAssertEqual(bobMe.header("X-RateLimit-Remaining"), "5")

      // A valid API key (made by Bob) counts in its own bucket, not Bob's.
      let key = try await suite.request("POST", "/api/v1/me/api-keys", json: #"{"name":"ci","scopes":["quiz:read"]}"#, bearer: bob)
      XCTAssertEqual(key.status, 201, String(decoding: key.body, as: UTF8.self))
      XCTAssertEqual(key.header("X-RateLimit-Remaining"), "4")
      let secret = try XCTUnwrap(key.data?["key"] as? String)
      let byKey = try await suite.request("GET", "/api/v1/me", headers: ["X-API-Key": secret])
      XCTAssertEqual(byKey.status, 200, String(decoding: byKey.body, as: UTF8.self))
      XCTAssertEqual(byKey.header("RateLimit"), #""api-key";r=5;t=100"#)
      XCTAssertEqual(byKey.data?["email"] as? String, "bob@example.com")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testMadeUpAPIKeysCantEachBuyAFreshBucket() async throws {
    // A generous limit per bucket: only the refused keys' charge to the address can stop this.
    let suite = try await GatewayHarness.start(gatewayFlags: ["rate-limit": "1000"])
    do {
      var statuses: [Int] = []
      for i in 0..<14 {
        let answer = try await suite.request("GET", "/api/v1/me", headers: ["X-API-Key": "qwk_made_up_\(i)_\(UUID())"])
        statuses.append(answer.status)
      }
      // The first ten reach the services, which refuse them; after that the address is out of
      // refusals and a fresh made-up key no longer gets a request through.
      XCTAssertEqual(Array(statuses.prefix(10)), Array(repeating: 401, count: 10), "\(statuses)")
      XCTAssertEqual(Array(statuses.suffix(4)), Array(repeating: 429, count: 4), "\(statuses)")
      let refused = try await suite.request("GET", "/api/v1/me", headers: ["X-API-Key": "qwk_another"])
      XCTAssertEqual(refused.error?["reason"] as? String, "RATE_LIMITED")
      XCTAssertTrue((refused.error?["message"] as? String ?? "").contains("refused API keys"), "\(refused.error ?? [:])")
      XCTAssertNotNil(refused.header("Retry-After"))
      // The same address without an API key, and a signed-in caller, are not affected.
      let anonymous = try await suite.request("GET", "/api/v1/quizzes?limit=1")
      XCTAssertEqual(anonymous.status, 200)
      let token = try await suite.signIn("keyless@example.com", name: "Keyless")
      let me = try await suite.request("GET", "/api/v1/me", bearer: token)
      XCTAssertEqual(me.status, 200)
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testAnInvalidBearerTokenIsRefusedBeforeAnyRPC() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags)
    do {
      let token = try await suite.signIn("eve@example.com", name: "Eve")
      // Eve's token with another user's `sub`: the signature no longer matches.
      let forged = try Self.withSubject("someone-else", in: token)
      for (id, bearer) in [("garbage", "not-a-token"), ("forged", forged)] {
        let answer = try await suite.request("GET", "/api/v1/me", bearer: bearer, headers: ["X-Request-Id": id])
        XCTAssertEqual(answer.status, 401, id)
        XCTAssertEqual(answer.error?["status"] as? String, "UNAUTHENTICATED", id)
        XCTAssertEqual(answer.header("WWW-Authenticate"), #"Bearer realm="quizwire", error="invalid_token""#, id)
        XCTAssertNil(answer.header("RateLimit"), "a refused token is charged to no bucket (\(id))")
        XCTAssertFalse(suite.authLog.entries().contains { $0["request_id"] as? String == id }, "no RPC for \(id)")
      }
      // The genuine token still works.
      let me = try await suite.request("GET", "/api/v1/me", bearer: token)
      XCTAssertEqual(me.status, 200)
      XCTAssertEqual(me.data?["email"] as? String, "eve@example.com")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// `token` with its payload's `sub` replaced and the original signature kept.
  static func withSubject(_ subject: String, in token: String) throws -> String {
    let parts = token.split(separator: ".").map(String.init)
    XCTAssertEqual(parts.count, 3)
    var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    var claims = try XCTUnwrap(try JSONSerialization.jsonObject(with: XCTUnwrap(Data(base64Encoded: base64))) as? [String: Any])
    XCTAssertNotEqual(claims["sub"] as? String, subject)
    claims["sub"] = subject
    let payload = try JSONSerialization.data(withJSONObject: claims).base64EncodedString()
      .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    return [parts[0], payload, parts[2]].joined(separator: ".")
  }
}
