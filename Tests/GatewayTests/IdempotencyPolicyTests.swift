import Foundation
import XCTest

@testable import Gateway

/// `IdempotencyPolicy` without I/O: key syntax, which routes take a key, whose record a request
/// reads, which answers are kept and what a second request meets.
final class IdempotencyPolicyTests: XCTestCase {
  private func key(_ value: String) -> String? { try? IdempotencyPolicy.parseKey(value).get() }
  private func refusal(_ value: String) -> String? {
    if case .failure(let error) = IdempotencyPolicy.parseKey(value) { return error.message }
    return nil
  }

  func testBareAndQuotedKeys() {
    XCTAssertEqual(self.key("abc-123"), "abc-123")
    XCTAssertEqual(self.key("8e03978e-40d5-43e8-bc93-6894a57f9324"), "8e03978e-40d5-43e8-bc93-6894a57f9324")
    XCTAssertEqual(self.key("  padded\t"), "padded", "optional whitespace around a field value is not part of it")
    XCTAssertEqual(self.key(#""abc""#), "abc", "an RFC 8941 string names the same key as the bare form")
    XCTAssertEqual(self.key(#""with space""#), "with space")
    XCTAssertEqual(self.key(#""q\"uote\\slash""#), #"q"uote\slash"#)
    XCTAssertEqual(self.key("!#$%&'*+-.^_`|~"), "!#$%&'*+-.^_`|~")
    XCTAssertEqual(self.key(String(repeating: "k", count: 255))?.count, 255)
    XCTAssertEqual(self.key("\"" + String(repeating: "k", count: 255) + "\"")?.count, 255)
  }

  func testMalformedKeysAreRefusedWithAReason() throws {
    let cases: [(String, String)] = [
      ("", "empty"),
      ("   ", "empty"),
      (#""""#, "empty"),
      (String(repeating: "k", count: 256), "at most 255"),
      ("\"" + String(repeating: "k", count: 256) + "\"", "at most 255"),
      ("two words", "visible ASCII"),
      ("a, b", "visible ASCII"),
      ("caf\u{e9}", "visible ASCII"),
      ("tab\there", "visible ASCII"),
      (#""unterminated"#, "no closing quote"),
      (#""abc";p=1"#, "nothing may follow"),
      (#""a" "b""#, "nothing may follow"),
      (#""bad\escape""#, "escapes"),
      ("\"caf\u{e9}\"", "printable ASCII"),
    ]
    for (value, expected) in cases {
      let message = try XCTUnwrap(self.refusal(value), "\(value.debugDescription) should be refused")
      XCTAssertTrue(message.contains(expected), "\(value.debugDescription): \(message)")
    }
  }

  func testOnlyCreatingRoutesWithoutCredentialsTakeAKey() throws {
    let table = try RouteTable()
    func route(_ verb: String, _ path: String) throws -> Route {
      guard case .route(let route, _) = table.match(verb: verb, path: path) else { throw XCTSkip("no route \(verb) \(path)") }
      return route
    }
    XCTAssertTrue(IdempotencyPolicy.applies(to: try route("POST", "/api/v1/quizzes")))
    XCTAssertTrue(IdempotencyPolicy.applies(to: try route("POST", "/api/v1/quizzes/q1/attempts")))
    XCTAssertFalse(IdempotencyPolicy.applies(to: try route("POST", "/api/v1/auth/register")), "answers with a new account")
    XCTAssertFalse(IdempotencyPolicy.applies(to: try route("POST", "/api/v1/me/api-keys")), "answers with the key's secret")
    XCTAssertFalse(IdempotencyPolicy.applies(to: try route("POST", "/api/v1/auth/login")))
    XCTAssertFalse(IdempotencyPolicy.applies(to: try route("POST", "/api/v1/quizzes/q1/publish")), "not a create")
    XCTAssertFalse(IdempotencyPolicy.applies(to: try route("GET", "/api/v1/quizzes")))
  }

  /// The deny-list is explicit, so a new route whose answer carries a credential must be added
  /// to it: every route whose response message has a token, key or secret field is refused.
  func testEveryRouteAnsweringWithACredentialIsDenied() throws {
    let table = try RouteTable()
    let credentialFields: Set<String> = ["access_token", "refresh_token", "id_token", "key", "secret", "client_secret", "ticket"]
    var credentialRoutes: [String] = []
    for route in table.routes {
      let fields = table.schema.fields(of: route.method.response.protoMessageName) ?? []
      guard fields.contains(where: { credentialFields.contains($0.name) }) else { continue }
      credentialRoutes.append(route.method.fullName)
      XCTAssertFalse(IdempotencyPolicy.applies(to: route), "\(route.verb) \(route.template) answers with a credential")
      XCTAssertTrue(IdempotencyPolicy.credentialMethods.contains(route.method.fullName), route.method.fullName)
    }
    XCTAssertTrue(credentialRoutes.contains("auth.v1.AuthService/Login"), "the check sees token responses: \(credentialRoutes)")
    XCTAssertTrue(credentialRoutes.contains("auth.v1.AuthService/CreateAPIKey"), "and API key secrets: \(credentialRoutes)")
  }

  func testTheCallerIsTheVerifiedUserElseTheAPIKeysHash() throws {
    XCTAssertEqual(IdempotencyPolicy.caller(verifiedUser: "u1", apiKey: "qk_secret"), "user:u1")
    let byKey = try XCTUnwrap(IdempotencyPolicy.caller(verifiedUser: nil, apiKey: "qk_secret"))
    XCTAssertTrue(byKey.hasPrefix("key:"))
    XCTAssertFalse(byKey.contains("qk_secret"), "the key itself is never stored")
    XCTAssertEqual(byKey.count, 4 + 64)
    XCTAssertNotEqual(byKey, IdempotencyPolicy.caller(verifiedUser: nil, apiKey: "qk_other"))
    XCTAssertNil(IdempotencyPolicy.caller(verifiedUser: nil, apiKey: nil))
    XCTAssertNil(IdempotencyPolicy.caller(verifiedUser: "", apiKey: ""))
  }

  func testFingerprintCoversBodyAndQuery() {
    let body = Data(#"{"title":"A"}"#.utf8)
    let base = IdempotencyPolicy.fingerprint(body: body, query: "")
    XCTAssertEqual(base, IdempotencyPolicy.fingerprint(body: body, query: ""))
    XCTAssertNotEqual(base, IdempotencyPolicy.fingerprint(body: Data(#"{"title":"B"}"#.utf8), query: ""))
    XCTAssertNotEqual(base, IdempotencyPolicy.fingerprint(body: body, query: "validate_only=true"))
    // The separator keeps a query from passing for the start of a body.
    XCTAssertNotEqual(
      IdempotencyPolicy.fingerprint(body: Data("bc".utf8), query: "a"), IdempotencyPolicy.fingerprint(body: Data("c".utf8), query: "ab"))
  }

  func testWhichAnswersAreKept() {
    for status in [200, 201, 204, 400, 403, 404, 409, 412, 422] {
      XCTAssertTrue(IdempotencyPolicy.isStorable(status: status), "\(status)")
    }
    for status in [401, 408, 425, 429, 499, 500, 501, 502, 503, 504] {
      XCTAssertFalse(IdempotencyPolicy.isStorable(status: status), "\(status) may succeed on a retry")
    }
  }

  func testWhatASecondRequestMeets() {
    XCTAssertEqual(IdempotencyPolicy.conflict(fingerprint: "f", storedFingerprint: "f", done: true), .replay)
    XCTAssertEqual(IdempotencyPolicy.conflict(fingerprint: "f", storedFingerprint: "f", done: false), .inFlight)
    XCTAssertEqual(IdempotencyPolicy.conflict(fingerprint: "g", storedFingerprint: "f", done: true), .mismatch)
    XCTAssertEqual(IdempotencyPolicy.conflict(fingerprint: "g", storedFingerprint: "f", done: false), .mismatch)
  }
}
