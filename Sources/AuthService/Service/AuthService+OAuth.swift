import Foundation
import GRPCCore
import GRPCProtobuf
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// OAuth 2.0 errors (RFC 6749 §5.2) as statuses: the `reason` in ErrorInfo is the OAuth
/// error code the gateway's /oauth/token endpoint returns.
enum OAuthError {
  static func make(_ code: RPCError.Code, _ reason: String, _ message: String) -> RPCError {
    RPCError(GoogleRPCStatus(code: code, message: "\(reason): \(message)",
                             details: [.errorInfo(reason: reason, domain: "auth.quizwire")]))
  }
  static func invalidClient() -> RPCError { make(.unauthenticated, "invalid_client", "client authentication failed") }
  static func invalidGrant(_ why: String) -> RPCError { make(.invalidArgument, "invalid_grant", why) }
  static func unauthorizedClient(_ why: String) -> RPCError { make(.permissionDenied, "unauthorized_client", why) }
  static func invalidScope(_ why: String) -> RPCError { make(.invalidArgument, "invalid_scope", why) }
  static func invalidRequest(_ why: String) -> RPCError { make(.invalidArgument, "invalid_request", why) }
}

extension AuthService {
  static let grantTypes: Set<String> = ["client_credentials", "authorization_code", "refresh_token"]

  public func registerClient(request: Auth_V1_RegisterClientRequest, context: ServerContext) async throws -> Auth_V1_RegisterClientResponse {
    var v = FieldViolations()
    v.require((1...100).contains(request.name.count), "name", "must be 1 to 100 characters")
    let grants = Set(request.grantTypes)
    v.require(!grants.isEmpty && grants.isSubset(of: Self.grantTypes), "grant_types", "use client_credentials, authorization_code, refresh_token")
    v.require(!grants.contains("client_credentials") || request.confidential, "grant_types", "client_credentials needs a confidential client")
    v.require(!grants.contains("authorization_code") || !request.redirectUris.isEmpty, "redirect_uris", "authorization_code needs at least one")
    for (i, uri) in request.redirectUris.enumerated() {
      v.require(Self.isAcceptableRedirect(uri), "redirect_uris[\(i)]", "must be an absolute https URL (http only for localhost) without a fragment")
    }
    v.require(request.scopes.count <= 50 && request.scopes.allSatisfy(Self.isValidScope), "scopes", "each scope is 1–64 of a-z 0-9 : . _ -")
    try v.check()
    let clientID = "cl_" + Secrets.id()
    let secret = request.confidential ? "cs_" + Secrets.random() : ""
    let record = OAuthClientRecord(
      clientID: clientID, secretHash: request.confidential ? Secrets.digest(secret) : nil, name: request.name,
      redirectURIs: request.redirectUris, grantTypes: grants, scopes: Set(request.scopes), createdAtMs: Self.nowMs())
    try await self.db.transaction { uow in try await self.clients.insert(record, in: uow) }
    self.logger.notice("oauth client registered", metadata: ["client_id": .string(clientID)])
    return .with {
      $0.clientID = clientID
      $0.clientSecret = secret
    }
  }

  public func clientCredentials(request: Auth_V1_ClientCredentialsRequest, context: ServerContext) async throws -> Auth_V1_TokenResponse {
    let client = try await self.authenticateClient(id: request.clientID, secret: request.clientSecret, requireSecret: true)
    guard client.grantTypes.contains("client_credentials") else { throw OAuthError.unauthorizedClient("client_credentials not allowed for this client") }
    let scope = try Self.grantedScope(requested: request.scope, allowed: client.scopes)
    let token = try await self.accessToken(sub: client.clientID, roles: ["service"], clientID: client.clientID, scope: scope)
    // No refresh token for client credentials (RFC 6749 §4.4.3): the client just asks again.
    return .with {
      $0.accessToken = token
      $0.expiresIn = self.config.accessTokenTTL.components.seconds
      $0.tokenType = "Bearer"
      $0.scope = scope
    }
  }

  public func authorize(request: Auth_V1_AuthorizeRequest, context: ServerContext) async throws -> Auth_V1_AuthorizeResponse {
    let principal = try Self.currentPrincipal()
    guard principal.kind == .user, principal.delegatedClient == nil else {
      throw RPCError(code: .permissionDenied, message: "only a signed-in user can authorize a client")
    }
    guard request.codeChallengeMethod == "S256" else { throw OAuthError.invalidRequest("code_challenge_method must be S256") }
    guard PKCE.isValidChallenge(request.codeChallenge) else { throw OAuthError.invalidRequest("code_challenge must be BASE64URL(SHA256(verifier))") }
    guard let client = try await self.db.read({ uow in try await self.clients.find(clientID: request.clientID, in: uow) }) else {
      // The signed-in user did nothing wrong: not "invalid_client" (which reads as a credential problem).
      throw OAuthError.invalidRequest("unknown client_id")
    }
    guard client.grantTypes.contains("authorization_code") else { throw OAuthError.unauthorizedClient("authorization_code not allowed") }
    // Exact string match: no prefix, case or normalisation games.
    guard client.redirectURIs.contains(request.redirectUri) else { throw OAuthError.invalidRequest("redirect_uri is not registered for this client") }
    let scope = try Self.grantedScope(requested: request.scope, allowed: client.scopes)
    let code = "ac_" + Secrets.random()
    let now = Self.nowMs()
    try await self.db.transaction { uow in
      try await self.tokens.insert(AuthCodeRecord(
        codeHash: Secrets.digest(code), clientID: client.clientID, userID: principal.subject, redirectURI: request.redirectUri,
        codeChallenge: request.codeChallenge, scope: scope, expiresAtMs: now + self.config.authCodeTTL.components.seconds * 1000,
        usedAtMs: nil, familyID: nil, createdAtMs: now), in: uow)
    }
    return .with {
      $0.code = code
      $0.expiresIn = self.config.authCodeTTL.components.seconds
    }
  }

  public func exchangeCode(request: Auth_V1_ExchangeCodeRequest, context: ServerContext) async throws -> Auth_V1_TokenResponse {
    let client = try await self.authenticateClient(id: request.clientID, secret: request.clientSecret, requireSecret: false)
    guard request.code.hasPrefix("ac_"), request.code.utf8.count < 200 else { throw OAuthError.invalidGrant("unknown code") }
    let hash = Secrets.digest(request.code)
    enum Outcome: Sendable { case issued(IssuedRefresh), refused(String), replayed(String?) }
    let outcome = try await self.db.transaction { uow -> Outcome in
      let now = Self.nowMs()
      guard let code = try await self.tokens.find(codeHash: hash, in: uow), code.clientID == client.clientID else { return .refused("unknown code") }
      if code.usedAtMs != nil {
        // A replayed code: whoever holds it is not the client. Revoke what it produced.
        if let family = code.familyID { try await self.tokens.revokeFamily(family, nowMs: now, in: uow) }
        return .replayed(code.familyID)
      }
      guard code.expiresAtMs > now else { return .refused("code expired") }
      guard code.redirectURI == request.redirectUri else { return .refused("redirect_uri does not match the authorization request") }
      guard PKCE.verify(verifier: request.codeVerifier, challenge: code.codeChallenge) else { return .refused("code_verifier does not match") }
      let family = "f-" + Secrets.id()
      guard try await self.tokens.consume(codeHash: hash, familyID: family, nowMs: now, in: uow) else { return .replayed(nil) }
      guard let user = try await self.users.find(id: code.userID, in: uow) else { return .refused("user no longer exists") }
      return .issued(try await self.storeRefreshToken(for: user, clientID: client.clientID, scope: code.scope, familyID: family, in: uow))
    }
    switch outcome {
    case .issued(let issued): return try await self.tokenResponse(issued)
    case .refused(let why): throw OAuthError.invalidGrant(why)
    case .replayed(let family):
      self.logger.warning("security: authorization code used twice; its tokens revoked", metadata: [
        "event": "auth_code_replay", "client_id": .string(client.clientID), "family_id": .string(family ?? "-"),
      ])
      throw OAuthError.invalidGrant("code already used")
    }
  }

  public func introspectToken(request: Auth_V1_IntrospectTokenRequest, context: ServerContext) async throws -> Auth_V1_IntrospectTokenResponse {
    if request.token.hasPrefix("rt_") {
      let now = Self.nowMs()
      guard let token = try await self.db.read({ uow in try await self.tokens.find(tokenHash: Secrets.digest(request.token), in: uow) }),
            token.usedAtMs == nil, token.revokedAtMs == nil, token.expiresAtMs > now else { return .with { $0.active = false } }
      return .with {
        $0.active = true
        $0.sub = token.userID
        $0.clientID = token.clientID ?? ""
        $0.scope = token.scope
        $0.exp = token.expiresAtMs / 1000
        $0.tokenType = "refresh_token"
      }
    }
    guard let claims = try? await self.verifier.verify(request.token) else { return .with { $0.active = false } }
    return .with {
      $0.active = true
      $0.sub = claims.sub
      $0.clientID = claims.clientID ?? ""
      $0.scope = claims.scope ?? ""
      $0.roles = claims.roles ?? []
      $0.exp = claims.exp
      $0.tokenType = "access_token"
    }
  }

  public func revokeToken(request: Auth_V1_RevokeTokenRequest, context: ServerContext) async throws -> Auth_V1_RevokeTokenResponse {
    // RFC 7009: unknown tokens are not an error. Access tokens live 15 minutes and are not
    // tracked server-side; revoking the refresh family ends the session.
    if request.token.hasPrefix("rt_") {
      try await self.db.transaction { uow in
        if let token = try await self.tokens.find(tokenHash: Secrets.digest(request.token), in: uow) {
          try await self.tokens.revokeFamily(token.familyID, nowMs: Self.nowMs(), in: uow)
        }
      }
    }
    return .init()
  }

  public func rotateSigningKey(request: Auth_V1_RotateSigningKeyRequest, context: ServerContext) async throws -> Auth_V1_RotateSigningKeyResponse {
    let kid = try await self.keyRing.rotate()
    self.logger.notice("signing key rotated", metadata: ["kid": .string(kid)])
    return .with { $0.kid = kid }
  }

  func authenticateClient(id: String, secret: String, requireSecret: Bool) async throws -> OAuthClientRecord {
    guard id.hasPrefix("cl_"), id.utf8.count < 100,
          let client = try await self.db.read({ uow in try await self.clients.find(clientID: id, in: uow) }) else {
      throw OAuthError.invalidClient()
    }
    if let stored = client.secretHash {
      guard Secrets.equalDigests(stored, Secrets.digest(secret)) else { throw OAuthError.invalidClient() }
    } else if requireSecret {
      throw OAuthError.invalidClient()
    }
    return client
  }

  /// The scope to grant: the requested one if the client may have all of it, else an error;
  /// an empty request means everything the client may have.
  static func grantedScope(requested: String, allowed: Set<String>) throws -> String {
    let asked = Set(requested.split(separator: " ").map(String.init))
    guard asked.isSubset(of: allowed) else {
      throw OAuthError.invalidScope("not allowed: \(asked.subtracting(allowed).sorted().joined(separator: " "))")
    }
    return (asked.isEmpty ? allowed : asked).sorted().joined(separator: " ")
  }

  static func isAcceptableRedirect(_ uri: String) -> Bool {
    guard uri.utf8.count <= 2000, let url = URLComponents(string: uri), url.fragment == nil,
          let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else { return false }
    if scheme == "https" { return true }
    return scheme == "http" && ["localhost", "127.0.0.1", "[::1]", "::1"].contains(host.lowercased())
  }
}
