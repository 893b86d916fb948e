import GRPCCore
import GRPCProtobuf
import QuizwireProtos
import ServiceKit
import Storage
import XCTest

@testable import AuthService

/// The auth request rules and error statuses on their own (the interceptor and GRPCCore apply
/// them on the wire; see AuthFlowTests and AuthKeysAndOAuthTests for the same end to end).
final class AuthValidationTests: XCTestCase {
  func fields(_ message: some ValidatableMessage) -> [String] { message.fieldViolations.violations.map(\.field) }

  func testRegisterRules() {
    let good = Auth_V1_RegisterRequest.with {
      $0.email = " Ann@Example.org "; $0.password = "correct horse battery"; $0.displayName = "Ann"
    }
    XCTAssertEqual(fields(good), [])
    let injected = Auth_V1_RegisterRequest.with {
      $0.email = "admin@example.com'--"; $0.password = "correct horse battery"
    }
    XCTAssertEqual(fields(injected), ["email"])
    let sameAsEmail = Auth_V1_RegisterRequest.with {
      $0.email = "ann@example.org"; $0.password = "ANN@example.org"
    }
    XCTAssertEqual(sameAsEmail.fieldViolations.violations.map(\.violationDescription), ["must not be the email address"])
    let badName = Auth_V1_RegisterRequest.with {
      $0.email = "ann@example.org"; $0.password = "correct horse battery"; $0.displayName = "a\u{7}b" + String(repeating: "x", count: 100)
    }
    XCTAssertEqual(fields(badName), ["display_name", "display_name"])
  }

  func testAPIKeyAndListRules() {
    XCTAssertEqual(
      fields(
        Auth_V1_CreateAPIKeyRequest.with {
          $0.name = "ci"; $0.scopes = ["quiz:read"]; $0.ttlSeconds = 3600
        }), [])
    let bad = Auth_V1_CreateAPIKeyRequest.with {
      $0.name = ""; $0.scopes = ["BAD SCOPE"]; $0.rateLimitPerSecond = .nan; $0.ttlSeconds = .max
    }
    XCTAssertEqual(fields(bad), ["name", "scopes", "rate_limit_per_second", "ttl_seconds"])
    XCTAssertEqual(fields(Auth_V1_RotateAPIKeyRequest.with { $0.overlapSeconds = -1 }), ["overlap_seconds"])
    XCTAssertEqual(
      fields(
        Auth_V1_ListUsersRequest.with {
          $0.limit = 201; $0.cursor = "' OR 1=1 --"
        }), ["limit", "cursor"])
    XCTAssertEqual(fields(Auth_V1_ListUsersRequest.with { $0.cursor = UserCursor.encode(createdAtMs: 1, id: "u-1") }), [])
    XCTAssertEqual(fields(Auth_V1_SetRolesRequest.with { $0.roles = ["root"] }), ["user_id", "roles"])
  }

  func testRegisterClientNamesEachBadRedirectByIndex() {
    let request = Auth_V1_RegisterClientRequest.with {
      $0.name = "web"; $0.grantTypes = ["authorization_code"]
      $0.redirectUris = ["https://app.example/cb", "http://evil.example/cb", "https://app.example/cb#frag"]
    }
    XCTAssertEqual(fields(request), ["redirect_uris[1]", "redirect_uris[2]"])
    let publicCredentials = Auth_V1_RegisterClientRequest.with {
      $0.name = "svc"; $0.grantTypes = ["client_credentials"]
    }
    XCTAssertEqual(fields(publicCredentials), ["grant_types"], "client_credentials needs a confidential client")
    let internalService = Auth_V1_RegisterClientRequest.with {
      $0.name = "quiz"; $0.grantTypes = ["client_credentials"]; $0.confidential = true; $0.internalService = true
    }
    XCTAssertEqual(fields(internalService), [])
  }

  func testClientIDs() {
    for good in ["cl_0123456789abcdef01234567", "quiz", "scoring", "gateway.v2"] { XCTAssertTrue(AuthService.isValidClientID(good), good) }
    for bad in ["", "cl_'; DROP TABLE oauth_clients;--", "a b", String(repeating: "x", count: 65)] {
      XCTAssertFalse(AuthService.isValidClientID(bad), bad)
    }
  }

  /// Handlers just throw these: each carries its status, none leaks driver detail.
  func testErrorsCarryTheirStatus() throws {
    XCTAssertEqual(RPCError(StorageError.uniqueViolation).code, .alreadyExists)
    let down = RPCError(StorageError.unavailable("connection refused to db.internal:5432"))
    XCTAssertEqual(down.code, .unavailable)
    XCTAssertEqual(down.message, "database unavailable")
    // Contention is RESOURCE_EXHAUSTED with a RetryInfo detail and retry-after-ms, never
    // UNAVAILABLE (that would open callers' breakers).
    for (error, ms) in [
      (RPCError(PasswordHashError.overloaded(retryAfter: .milliseconds(1500))), 1500),
      (RPCError(StorageError.busy("writer: 512 already waiting", retryAfter: .milliseconds(250))), 250),
    ] {
      XCTAssertEqual(error.code, .resourceExhausted)
      XCTAssertTrue(error.message.contains("retry after \(ms) ms"), error.message)
      XCTAssertFalse(error.message.contains("512"), "no internals in the message: \(error.message)")
      XCTAssertEqual(try error.unpackGoogleRPCStatus()?.details.first?.retryInfo?.delay, .milliseconds(ms))
      XCTAssertEqual(error.metadata[stringValues: StorageError.retryAfterKey].first(where: { _ in true }), String(ms))
    }
    XCTAssertEqual(RPCError(SigningKeyError.noSigningKey).code, .internalError)
    XCTAssertEqual(RPCError(AuthFailure.expired).code, .unauthenticated)
    let oauth = RPCError(OAuthError.invalidGrant("code expired"))
    XCTAssertEqual(oauth.code, .invalidArgument)
    XCTAssertEqual(oauth.message, "invalid_grant: code expired")
    XCTAssertEqual(try oauth.unpackGoogleRPCStatus()?.details.first?.errorInfo?.reason, "invalid_grant")
    XCTAssertEqual(RPCError(OAuthError.invalidClient).code, .unauthenticated)
    XCTAssertEqual(RPCError(OAuthError.unauthorizedClient("no")).code, .permissionDenied)
  }
}
