@testable import Gateway
import XCTest

/// The gateway keeps renderings of read replies by their exact bytes: a hit only for the same
/// type, limit and bytes; bounded in bytes, oldest out first; large replies never kept.
final class RenderCacheTests: XCTestCase {
  func shaped(_ json: String) -> ResponseShaper.Shaped {
    ResponseShaper.Shaped(json: json, meta: Envelope.Meta(), id: "q1", etag: "e1")
  }

  func testAHitNeedsTheSameTypeLimitAndBytes() {
    let cache = RenderCache()
    let key = RenderCache.Key(type: "quiz.v1.Quiz", limit: nil, reply: [1, 2, 3])
    XCTAssertNil(cache.value(for: key))
    cache.store(self.shaped(#"{"id":"q1"}"#), for: key)
    XCTAssertEqual(cache.value(for: RenderCache.Key(type: "quiz.v1.Quiz", limit: nil, reply: [1, 2, 3]))?.json, #"{"id":"q1"}"#)
    XCTAssertNil(cache.value(for: RenderCache.Key(type: "quiz.v1.Quiz", limit: nil, reply: [1, 2, 4])), "other bytes")
    XCTAssertNil(cache.value(for: RenderCache.Key(type: "quiz.v1.Quiz", limit: 5, reply: [1, 2, 3])), "another limit")
    XCTAssertNil(cache.value(for: RenderCache.Key(type: "auth.v1.User", limit: nil, reply: [1, 2, 3])), "another type")
    let stats = cache.stats
    XCTAssertEqual([stats.entries, stats.hits, stats.misses], [1, 1, 4])
  }

  func testBoundedInBytesOldestOutFirstAndLargeRepliesNotKept() {
    // Each entry costs 100 reply bytes + 2 JSON bytes + 4 (id, etag) + 256.
    let cache = RenderCache(capacityBytes: 3 * 362, largestReply: 200)
    let keys = (0..<5).map { RenderCache.Key(type: "t", limit: nil, reply: [UInt8](repeating: UInt8($0), count: 100)) }
    for key in keys { cache.store(self.shaped("{}"), for: key) }
    XCTAssertEqual(cache.stats.entries, 3)
    XCTAssertLessThanOrEqual(cache.stats.bytes, 3 * 362)
    XCTAssertNil(cache.value(for: keys[0]))
    XCTAssertNil(cache.value(for: keys[1]))
    XCTAssertNotNil(cache.value(for: keys[4]))

    let large = RenderCache.Key(type: "t", limit: nil, reply: [UInt8](repeating: 9, count: 201))
    cache.store(self.shaped("{}"), for: large)
    XCTAssertNil(cache.value(for: large))
  }

  /// Through the real gateway: a repeated read is a hit with the same data; after an edit the
  /// service's reply differs, so the next read renders the new quiz (nothing stale).
  func testRepeatedReadsHitAndAnEditIsNeverServedStale() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let token = try await suite.signIn("render@example.com", name: "Ren")
      let created = try await suite.request("POST", "/api/v1/quizzes", json: GatewayEndToEndTests.quizBody, bearer: token)
      let id = try XCTUnwrap(created.data?["id"] as? String)
      let published = try await suite.request("POST", "/api/v1/quizzes/\(id)/publish", bearer: token)
      XCTAssertEqual(published.status, 200, String(decoding: published.body, as: UTF8.self))

      let before = try await self.counts(suite)
      let first = try await suite.request("GET", "/api/v1/quizzes/\(id)")
      let second = try await suite.request("GET", "/api/v1/quizzes/\(id)")
      XCTAssertEqual(first.status, 200)
      XCTAssertEqual(first.data as NSDictionary?, second.data as NSDictionary?)
      XCTAssertEqual(second.header("ETag"), first.header("ETag"))
      let after = try await self.counts(suite)
      XCTAssertEqual(after.hits - before.hits, 1, "the second read is a hit")

      let patched = try await suite.request("PATCH", "/api/v1/quizzes/\(id)", json: #"{"title":"Edited"}"#, bearer: token)
      XCTAssertEqual(patched.status, 200, String(decoding: patched.body, as: UTF8.self))
      let edited = try await suite.request("GET", "/api/v1/quizzes/\(id)")
      XCTAssertEqual(edited.data?["title"] as? String, "Edited")
      XCTAssertNotEqual(edited.header("ETag"), first.header("ETag"))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// The render cache's hit and miss counters from the admin port's `/metrics`.
  func counts(_ suite: GatewayHarness) async throws -> (hits: Int, misses: Int) {
    let metrics = String(decoding: try await HTTPResult.send("GET", suite.adminURL + "/metrics").body, as: UTF8.self)
    func value(_ name: String) -> Int {
      metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int(Double($0.split(separator: " ")[1]) ?? -1) } ?? 0
    }
    return (value("gateway_render_cache_hits_total"), value("gateway_render_cache_misses_total"))
  }
}
