import Foundation
import XCTest

/// Header policies over real sockets: oversized request headers are 431 in the envelope (before
/// any token check or RPC), and a published quiz read anonymously may be kept by shared caches
/// for a short while, while drafts and signed-in reads stay out of them.
final class GatewayHeaderPolicyTests: XCTestCase {
  /// One request over a raw socket (URLSession would refuse or trim some of these headers);
  /// returns the status, the headers and the envelope.
  private func rawGET(_ h: GatewayHarness, _ path: String, headers: [String: String]) async throws -> (
    status: Int, headers: RawHTTPStream, json: [String: Any]?
  ) {
    let stream = try RawHTTPStream(h.baseURL, path, headers: headers)
    defer { stream.close() }
    // Every envelope ends its `meta` object and then itself.
    let body = await stream.next(until: "}}", within: .seconds(10)).map { $0 + "}}" }
    let json = body.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    return (stream.status, stream, json)
  }

  func testOversizedHeadersAre431InTheEnvelopeBeforeAnyCheck() async throws {
    let h = try await GatewayHarness.start()
    do {
      // One field over 8 KiB, with a request id of the caller's that comes back.
      let secret = String(repeating: "s", count: 9000)
      let one = try await self.rawGET(h, "/api/v1/quizzes", headers: ["X-Big": secret, "X-Request-Id": "big-header-1"])
      XCTAssertEqual(one.status, 431)
      XCTAssertEqual(one.headers.header("X-Request-Id"), "big-header-1")
      XCTAssertEqual(one.headers.header("Content-Type"), "application/json")
      let error = try XCTUnwrap(one.json?["error"] as? [String: Any])
      XCTAssertEqual(error["code"] as? Int, 431)
      XCTAssertEqual(error["status"] as? String, "REQUEST_HEADER_FIELDS_TOO_LARGE")
      XCTAssertTrue((error["message"] as? String ?? "").lowercased().contains("x-big"), "\(error)")
      XCTAssertEqual((one.json?["meta"] as? [String: Any])?["request_id"] as? String, "big-header-1")
      XCTAssertFalse(String(describing: one.json ?? [:]).contains("sssssss"), "the value is never echoed")

      // Fields under 8 KiB each but over 16 KiB together.
      let chunk = String(repeating: "c", count: 6000)
      let many = try await self.rawGET(h, "/api/v1/quizzes", headers: ["X-A": chunk, "X-B": chunk, "X-C": chunk])
      XCTAssertEqual(many.status, 431)
      XCTAssertNotNil(many.headers.header("X-Request-Id"))
      XCTAssertTrue(((many.json?["error"] as? [String: Any])?["message"] as? String ?? "").contains("in all"), "\(many.json ?? [:])")

      // An oversized bearer token is 431, not a 401 from verifying it: the size check comes first.
      let token = try await self.rawGET(h, "/api/v1/me", headers: ["Authorization": "Bearer " + String(repeating: "t", count: 9000)])
      XCTAssertEqual(token.status, 431)
      XCTAssertNil(token.headers.header("WWW-Authenticate"))

      // Just under both limits is answered as usual.
      let fine = try await self.rawGET(h, "/api/v1/quizzes", headers: ["X-A": String(repeating: "a", count: 7000), "X-B": chunk])
      XCTAssertEqual(fine.status, 200)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }

  /// A request NIO's parser rejects (an unknown method, a request line with a space in the
  /// path) is 400 in the envelope and its connection closed — before, the connection stayed
  /// open and unanswered until the client gave up.
  func testARequestThatDoesNotParseIs400AndItsConnectionClosed() async throws {
    let h = try await GatewayHarness.start()
    do {
      for (method, path) in [("FROB", "/api/v1/quizzes"), ("GET", "/api/v1/quizzes /x")] {
        let stream = try RawHTTPStream(h.baseURL, path, method: method, within: .seconds(5))
        defer { stream.close() }
        XCTAssertEqual(stream.status, 400, "\(method) \(path)")
        XCTAssertEqual(stream.header("Connection"), "close")
        let body = await stream.rest(within: .seconds(5))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], body)
        let error = try XCTUnwrap(json["error"] as? [String: Any])
        XCTAssertEqual(error["status"] as? String, "INVALID_ARGUMENT")
        XCTAssertEqual((json["meta"] as? [String: Any])?["request_id"] as? String, stream.header("X-Request-Id"))
        XCTAssertTrue(stream.eof, "closed after the answer")
      }
      // The gateway is unharmed.
      let fine = try await self.rawGET(h, "/api/v1/quizzes", headers: [:])
      XCTAssertEqual(fine.status, 200)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }

  func testAPublishedQuizReadAnonymouslyIsPubliclyCacheableAndNothingElseIs() async throws {
    let h = try await GatewayHarness.start()
    do {
      let token = try await h.signIn("cache@example.com", name: "Cache")
      let created = try await h.request("POST", "/api/v1/quizzes", json: GatewayEndToEndTests.quizBody, bearer: token)
      XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
      let id = try XCTUnwrap(created.data?["id"] as? String)

      // A draft: the author's read is private, an anonymous one finds nothing (and no cache keeps that).
      let draft = try await h.request("GET", "/api/v1/quizzes/\(id)", bearer: token)
      XCTAssertEqual(draft.status, 200)
      XCTAssertEqual(draft.header("Cache-Control"), "no-store")
      let anonymousDraft = try await h.request("GET", "/api/v1/quizzes/\(id)")
      XCTAssertEqual(anonymousDraft.status, 404)
      XCTAssertEqual(anonymousDraft.header("Cache-Control"), "no-store")

      let published = try await h.request("POST", "/api/v1/quizzes/\(id)/publish", bearer: token)
      XCTAssertEqual(published.status, 200, String(decoding: published.body, as: UTF8.self))

      // Published and anonymous: public for 30 s, with its ETag, varying on credentials.
      let open = try await h.request("GET", "/api/v1/quizzes/\(id)")
      XCTAssertEqual(open.status, 200)
      XCTAssertEqual(open.data?["state"] as? String, "QUIZ_STATE_PUBLISHED")
      XCTAssertEqual(open.header("Cache-Control"), "public, max-age=30")
      let etag = try XCTUnwrap(open.header("ETag"))
      XCTAssertTrue(open.header("Vary")?.contains("Authorization") == true, "\(open.headers)")
      // Revalidation keeps the same policy (RFC 9110: a 304 carries what the 200 would).
      let revalidated = try await h.request("GET", "/api/v1/quizzes/\(id)", headers: ["If-None-Match": etag])
      XCTAssertEqual(revalidated.status, 304)
      XCTAssertEqual(revalidated.header("Cache-Control"), "public, max-age=30")

      // The author's own read of the same quiz stays out of shared caches, as does a key's.
      let mine = try await h.request("GET", "/api/v1/quizzes/\(id)", bearer: token)
      XCTAssertEqual(mine.status, 200)
      XCTAssertEqual(mine.header("Cache-Control"), "no-store")
      // Lists are not the published resource: no public caching there.
      let list = try await h.request("GET", "/api/v1/quizzes")
      XCTAssertEqual(list.status, 200)
      XCTAssertNotEqual(list.header("Cache-Control"), "public, max-age=30")

      // Unpublished again: no longer public.
      let unpublished = try await h.request("POST", "/api/v1/quizzes/\(id)/unpublish", bearer: token)
      XCTAssertEqual(unpublished.status, 200, String(decoding: unpublished.body, as: UTF8.self))
      let gone = try await h.request("GET", "/api/v1/quizzes/\(id)")
      XCTAssertNotEqual(gone.header("Cache-Control"), "public, max-age=30")
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }
}
