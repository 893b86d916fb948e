import Foundation
import QuizwireProtos
import ServiceKit

// Input rules of auth.v1.AuthService, declared per request message. The validation
// interceptor runs them before a handler reads the message, so handlers see only valid
// input; what needs the database or a secret (an email already registered, a client's
// secret) stays in the handler. Login, Refresh, token and code exchanges are not validated
// here on purpose: any bad credential must read like a wrong one (UNAUTHENTICATED or the
// RFC 6749 error code), never like a field violation.

extension Auth_V1_RegisterRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    let email = EmailAddress.normalize(self.email)
    violations.require(email != nil, "email", "must be a valid email address")
    for problem in PasswordPolicy.violations(self.password, email: email) { violations.add("password", problem) }
    let displayName = self.displayName.trimmingCharacters(in: .whitespacesAndNewlines)
    violations.require(displayName.count <= 100, "display_name", "must be at most 100 characters")
    violations.require(!AuthService.hasControlCharacters(displayName), "display_name", "must not contain control characters")
  }
}

extension Auth_V1_UpdateProfileRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    let displayName = self.displayName.trimmingCharacters(in: .whitespacesAndNewlines)
    violations.require((1...100).contains(displayName.count), "display_name", "must be 1 to 100 characters (after trimming spaces)")
    violations.require(!AuthService.hasControlCharacters(displayName), "display_name", "must not contain control characters")
    violations.require(
      displayName.isEmpty || AuthService.hasVisibleCharacter(displayName), "display_name", "must contain a visible character")
  }
}

extension Auth_V1_BatchGetUsersRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(self.ids.count <= AuthService.maxBatchGetUsers, "ids", "at most \(AuthService.maxBatchGetUsers) ids")
  }
}

extension Auth_V1_ListUsersRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require((0...200).contains(self.limit), "limit", "must be between 1 and 200 (0 for the default of 50)")
    violations.require(self.cursor.isEmpty || UserCursor.decode(self.cursor) != nil, "cursor", "is not a cursor this service issued")
  }
}

extension Auth_V1_SetRolesRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.userID.isEmpty, "user_id", "is required")
    let roles = Set(self.roles)
    let unknown = roles.subtracting(UserRoles.known)
    violations.require(unknown.isEmpty, "roles", "unknown roles: \(unknown.sorted().joined(separator: ", ")); allowed: user, author, admin")
    violations.require(!roles.isEmpty, "roles", "must not be empty")
  }
}

extension Auth_V1_CreateAPIKeyRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require((1...100).contains(self.name.count), "name", "must be 1 to 100 characters")
    violations.require(self.scopes.count <= 20, "scopes", "at most 20 scopes")
    violations.require(self.scopes.allSatisfy(AuthService.isValidScope), "scopes", AuthService.scopeRule)
    violations.require(
      self.rateLimitPerSecond.isFinite && (0...100_000).contains(self.rateLimitPerSecond),
      "rate_limit_per_second", "must be between 0 and 100000")
    violations.require(
      (0...AuthService.maxKeyTTLSeconds).contains(self.ttlSeconds),
      "ttl_seconds", "must be between 0 (no expiry) and \(AuthService.maxKeyTTLSeconds) (ten years)")
    violations.require(!AuthService.hasControlCharacters(self.name), "name", "must not contain control characters")
  }
}

extension Auth_V1_RotateAPIKeyRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(
      (0...AuthService.maxKeyOverlapSeconds).contains(self.overlapSeconds),
      "overlap_seconds", "must be between 0 and \(AuthService.maxKeyOverlapSeconds)")
  }
}

extension Auth_V1_RegisterClientRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require((1...100).contains(self.name.count), "name", "must be 1 to 100 characters")
    let grants = Set(self.grantTypes)
    violations.require(
      !grants.isEmpty && grants.isSubset(of: AuthService.grantTypes), "grant_types",
      "use client_credentials, authorization_code, refresh_token")
    violations.require(
      !grants.contains("client_credentials") || self.confidential, "grant_types",
      "client_credentials needs a confidential client")
    violations.require(
      !grants.contains("authorization_code") || !self.redirectUris.isEmpty, "redirect_uris",
      "authorization_code needs at least one")
    violations.each("redirect_uris", self.redirectUris) { element, uri in
      element.require(AuthService.isAcceptableRedirect(uri), "", "must be an absolute https URL (http only for localhost) without a fragment")
    }
    violations.require(self.scopes.count <= 50 && self.scopes.allSatisfy(AuthService.isValidScope), "scopes", AuthService.scopeRule)
    // A service of the suite acts for itself only: no user-facing grants beside its token.
    violations.require(
      !self.internalService || grants == ["client_credentials"], "internal_service",
      "an internal service client has the client_credentials grant only")
  }
}

extension AuthService {
  static let grantTypes: Set<String> = ["client_credentials", "authorization_code", "refresh_token"]
  /// Ten years: long enough for any key, short enough that expiry arithmetic can't overflow.
  static let maxKeyTTLSeconds: Int64 = 10 * 365 * 86_400
  static let maxKeyOverlapSeconds: Int64 = 30 * 24 * 3600
  static let scopeRule = "each scope is 1–64 of a-z 0-9 : . _ -"

  static func isValidScope(_ s: String) -> Bool {
    (1...64).contains(s.utf8.count)
      && s.utf8.allSatisfy { b in
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x3A || b == 0x2E || b == 0x5F || b == 0x2D
      }
  }

  /// Ours (`cl_…`) or an internal client's name (`quiz`): 1–64 of A-Z a-z 0-9 . _ : -.
  static func isValidClientID(_ id: String) -> Bool {
    (1...64).contains(id.utf8.count)
      && id.utf8.allSatisfy { b in
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x3A || b == 0x2E || b == 0x5F || b == 0x2D
      }
  }

  static func isAcceptableRedirect(_ uri: String) -> Bool {
    guard uri.utf8.count <= 2000, let url = URLComponents(string: uri), url.fragment == nil,
      let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty
    else { return false }
    if scheme == "https" { return true }
    return scheme == "http" && ["localhost", "127.0.0.1", "[::1]", "::1"].contains(host.lowercased())
  }

  static func hasControlCharacters(_ text: String) -> Bool {
    text.unicodeScalars.contains { $0.properties.generalCategory == .control }
  }
}
