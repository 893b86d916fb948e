import Foundation
import XCTest

/// The gateway over real HTTP in front of real auth, quiz and scoring hosts: the first
/// slice of issue 15 as a browser would use it.
final class GatewayEndToEndTests: XCTestCase {
  static let quizBody = """
    {"title":"Gateway quiz","description":"Through JSON.","questionTimeLimitSeconds":30,
     "questions":[{"kind":"QUESTION_KIND_SINGLE_CHOICE","prompt":"One?","points":1,
       "choices":[{"id":"a","text":"A"},{"id":"b","text":"B"}],"answerKey":{"correctChoiceIds":["a"]}}]}
    """

  func testAUserRegistersCreatesPublishesAndPlays() async throws {
    let suite = try await GatewayHarness.start()
    do {
      // Register is 201 and never echoes the password; login answers canonical JSON (int64 as a string).
      let register = try await suite.request(
        "POST", "/api/v1/auth/register", json: #"{"email":"ada@example.com","password":"\#(GatewayHarness.password)","displayName":"Ada"}"#)
      XCTAssertEqual(register.status, 201, String(decoding: register.body, as: UTF8.self))
      XCTAssertEqual((register.data?["user"] as? [String: Any])?["email"] as? String, "ada@example.com")
      XCTAssertFalse(String(decoding: register.body, as: UTF8.self).contains("password"))
      let login = try await suite.request("POST", "/api/v1/auth/login", json: #"{"email":"ada@example.com","password":"\#(GatewayHarness.password)"}"#)
      XCTAssertEqual(login.status, 200)
      XCTAssertTrue(login.data?["expiresIn"] is String, "int64 as a string")
      let token = try XCTUnwrap(login.data?["accessToken"] as? String)

      // The request id goes in and comes back, in the header and in meta.
      let me = try await suite.request("GET", "/api/v1/me", bearer: token, headers: ["X-Request-Id": "req-gateway-1"])
      XCTAssertEqual(me.status, 200)
      XCTAssertEqual(me.data?["email"] as? String, "ada@example.com")
      XCTAssertEqual(me.header("X-Request-Id"), "req-gateway-1")
      XCTAssertEqual(me.meta?["request_id"] as? String, "req-gateway-1")
      XCTAssertNotNil((me.meta?["timestamp"] as? String).flatMap { try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse($0) })
      XCTAssertNil(me.error)
      // …and reached the service as its x-request-id.
      XCTAssertTrue(
        suite.authLog.entries().contains { $0["request_id"] as? String == "req-gateway-1" && $0["method"] as? String == "auth.v1.AuthService/GetMe" })

      // An API key made through the gateway works through it as X-API-Key.
      let key = try await suite.request("POST", "/api/v1/me/api-keys", json: #"{"name":"ci","scopes":["quiz:read"]}"#, bearer: token)
      XCTAssertEqual(key.status, 201, String(decoding: key.body, as: UTF8.self))
      let secret = try XCTUnwrap(key.data?["key"] as? String)
      let byKey = try await suite.request("GET", "/api/v1/me", headers: ["X-API-Key": secret])
      XCTAssertEqual(byKey.status, 200, String(decoding: byKey.body, as: UTF8.self))
      XCTAssertEqual(byKey.data?["email"] as? String, "ada@example.com")
      let keys = try await suite.request("GET", "/api/v1/me/api-keys", bearer: token)
      XCTAssertEqual(keys.list?.count, 1, "a list without paging is still the array")

      // Create: 201 with Location; enums as names, times as RFC 3339.
      let created = try await suite.request("POST", "/api/v1/quizzes", json: Self.quizBody, bearer: token)
      XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
      let id = try XCTUnwrap(created.data?["id"] as? String)
      XCTAssertEqual(created.header("Location"), "/api/v1/quizzes/\(id)")
      XCTAssertEqual(created.data?["state"] as? String, "QUIZ_STATE_DRAFT")
      let read = try await suite.request("GET", "/api/v1/quizzes/\(id)", bearer: token)
      XCTAssertEqual(read.status, 200)
      XCTAssertEqual(read.data?["id"] as? String, id)
      XCTAssertNotNil((read.data?["createTime"] as? String).flatMap { try? Date.ISO8601FormatStyle().parse($0) }, "RFC 3339")

      // PATCH sends only the title: the update mask comes from the keys, the rest is kept.
      let patched = try await suite.request("PATCH", "/api/v1/quizzes/\(id)", json: #"{"title":"Renamed"}"#, bearer: token)
      XCTAssertEqual(patched.status, 200, String(decoding: patched.body, as: UTF8.self))
      XCTAssertEqual(patched.data?["title"] as? String, "Renamed")
      XCTAssertEqual(patched.data?["description"] as? String, "Through JSON.")
      XCTAssertEqual(patched.data?["questionCount"] as? Int, 1)

      let published = try await suite.request("POST", "/api/v1/quizzes/\(id)/publish", bearer: token)
      XCTAssertEqual(published.status, 200, String(decoding: published.body, as: UTF8.self))
      XCTAssertEqual(published.data?["state"] as? String, "QUIZ_STATE_PUBLISHED")

      // Publishing a quiz without questions breaks a business rule: 422.
      let empty = try await suite.request("POST", "/api/v1/quizzes", json: #"{"title":"Empty"}"#, bearer: token)
      XCTAssertEqual(empty.status, 201, String(decoding: empty.body, as: UTF8.self))
      let emptyID = try XCTUnwrap(empty.data?["id"] as? String)
      let refused = try await suite.request("POST", "/api/v1/quizzes/\(emptyID)/publish", bearer: token)
      XCTAssertEqual(refused.status, 422, String(decoding: refused.body, as: UTF8.self))
      XCTAssertEqual(refused.error?["status"] as? String, "FAILED_PRECONDITION")
      XCTAssertEqual(refused.error?["code"] as? Int, 422)
      XCTAssertNil(refused.json?["data"])

      let attempt = try await suite.request("POST", "/api/v1/quizzes/\(id)/attempts", bearer: token)
      XCTAssertEqual(attempt.status, 201, String(decoding: attempt.body, as: UTF8.self))
      let attemptID = try XCTUnwrap(attempt.data?["id"] as? String)
      XCTAssertEqual(attempt.header("Location"), "/api/v1/attempts/\(attemptID)")
      let fetched = try await suite.request("GET", "/api/v1/attempts/\(attemptID)", bearer: token)
      XCTAssertEqual(fetched.status, 200)
      XCTAssertEqual(fetched.data?["quizId"] as? String, id)

      // A list: data is the array, paging in meta.pagination.
      let board = try await suite.request("GET", "/api/v1/quizzes/\(id)/leaderboard?limit=5")
      XCTAssertEqual(board.status, 200, String(decoding: board.body, as: UTF8.self))
      XCTAssertNotNil(board.list)
      let pagination = try XCTUnwrap(board.meta?["pagination"] as? [String: Any])
      XCTAssertEqual(pagination["limit"] as? Int, 5)
      XCTAssertTrue(pagination["next_cursor"] is NSNull)

      // Paging through quizzes with limit and cursor: page one points at page two.
      let second = try await suite.request("POST", "/api/v1/quizzes", json: Self.quizBody, bearer: token)
      XCTAssertEqual(second.status, 201)
      let page1 = try await suite.request("GET", "/api/v1/quizzes?limit=1", bearer: token)
      XCTAssertEqual(page1.status, 200, String(decoding: page1.body, as: UTF8.self))
      XCTAssertEqual(page1.list?.count, 1)
      let cursor = try XCTUnwrap((page1.meta?["pagination"] as? [String: Any])?["next_cursor"] as? String)
      let page2 = try await suite.request("GET", "/api/v1/quizzes?limit=1&cursor=\(cursor)", bearer: token)
      XCTAssertEqual(page2.status, 200, String(decoding: page2.body, as: UTF8.self))
      XCTAssertEqual(page2.list?.count, 1)
      XCTAssertNotEqual(page2.list?.first?["id"] as? String, page1.list?.first?["id"] as? String)

      // DELETE is 204 with no body; the quiz is gone after it.
      let secondID = try XCTUnwrap(second.data?["id"] as? String)
      let deleted = try await suite.request("DELETE", "/api/v1/quizzes/\(secondID)", bearer: token)
      XCTAssertEqual(deleted.status, 204)
      XCTAssertTrue(deleted.body.isEmpty)
      let gone = try await suite.request("GET", "/api/v1/quizzes/\(secondID)", bearer: token)
      XCTAssertEqual(gone.status, 404)
      XCTAssertEqual(gone.error?["status"] as? String, "NOT_FOUND")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testRefusalsUseTheEnvelope() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let token = try await suite.signIn("bob@example.com", name: "Bob")

      // Strict decoding: each wrong field named, before any RPC.
      let wrong = try await suite.request("POST", "/api/v1/quizzes", json: #"{"title":5,"bogus":true,"tags":"x"}"#, bearer: token)
      XCTAssertEqual(wrong.status, 400)
      XCTAssertEqual(wrong.error?["status"] as? String, "INVALID_ARGUMENT")
      XCTAssertEqual(wrong.violations, ["title": "must be a string", "bogus": "unknown field", "tags": "must be a JSON array"])
      XCTAssertNil(wrong.json?["data"])
      let malformed = try await suite.request("POST", "/api/v1/quizzes", json: #"{"title": "#, bearer: token)
      XCTAssertEqual(malformed.status, 400)
      XCTAssertEqual(malformed.error?["message"] as? String, "the request body is not valid JSON")
      let query = try await suite.request("GET", "/api/v1/quizzes?limit=many&colour=red", bearer: token)
      XCTAssertEqual(query.status, 400)
      XCTAssertEqual(query.violations, ["limit": "must be an integer", "colour": "unknown field"])

      // The service's own field violations come through as details.
      let badEmail = try await suite.request("POST", "/api/v1/auth/register", json: #"{"email":"not-an-email","password":"x"}"#)
      XCTAssertEqual(badEmail.status, 400, String(decoding: badEmail.body, as: UTF8.self))
      XCTAssertFalse(badEmail.violations.isEmpty)

      let notJSON = try await suite.request(
        "POST", "/api/v1/quizzes", bearer: token, headers: ["Content-Type": "text/plain"], rawBody: Data("title".utf8))
      XCTAssertEqual(notJSON.status, 415)
      let huge = try await suite.request(
        "POST", "/api/v1/quizzes", bearer: token, headers: ["Content-Type": "application/json"],
        rawBody: Data(("{\"description\":\"" + String(repeating: "x", count: (1 << 20) + 10) + "\"}").utf8))
      XCTAssertEqual(huge.status, 413)
      XCTAssertEqual(huge.error?["code"] as? Int, 413)

      let unknown = try await suite.request("GET", "/api/v1/nothing-here")
      XCTAssertEqual(unknown.status, 404)
      XCTAssertEqual(unknown.error?["status"] as? String, "NOT_FOUND")
      XCTAssertNotNil(unknown.header("X-Request-Id"))
      XCTAssertEqual(unknown.meta?["request_id"] as? String, unknown.header("X-Request-Id"))

      let wrongVerb = try await suite.request("PUT", "/api/v1/quizzes", json: "{}")
      XCTAssertEqual(wrongVerb.status, 405)
      XCTAssertEqual(wrongVerb.header("Allow"), "GET, POST")
      XCTAssertEqual(wrongVerb.error?["code"] as? Int, 405)

      let anonymous = try await suite.request("GET", "/api/v1/me")
      XCTAssertEqual(anonymous.status, 401)
      XCTAssertEqual(anonymous.header("WWW-Authenticate")?.hasPrefix("Bearer"), true)
      XCTAssertEqual(anonymous.error?["status"] as? String, "UNAUTHENTICATED")

      // Logout is 204.
      let login = try await suite.request("POST", "/api/v1/auth/login", json: #"{"email":"bob@example.com","password":"\#(GatewayHarness.password)"}"#)
      let refresh = try XCTUnwrap(login.data?["refreshToken"] as? String)
      let logout = try await suite.request("POST", "/api/v1/auth/logout", json: #"{"refreshToken":"\#(refresh)"}"#, bearer: token)
      XCTAssertEqual(logout.status, 204, String(decoding: logout.body, as: UTF8.self))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }
}
