import Foundation
import GRPCCore
import GRPCProtobuf
import Logging
import QuizwireProtos
import ServiceKit
import Storage

/// An OAuth 2.0 error response (RFC 6749 §5.2) as a status: the error code travels as the
/// `reason` of a `google.rpc.ErrorInfo`, which the gateway's /oauth/token endpoint returns.
enum OAuthError: Error, Hashable, RPCErrorConvertible {
  case invalidRequest(String)
  case invalidClient
  case invalidGrant(String)
  case unauthorizedClient(String)
  case invalidScope(String)

  /// The RFC 6749 error code.
  var code: String {
    switch self {
    case .invalidRequest: "invalid_request"
    case .invalidClient: "invalid_client"
    case .invalidGrant: "invalid_grant"
    case .unauthorizedClient: "unauthorized_client"
    case .invalidScope: "invalid_scope"
    }
  }

  var why: String {
    switch self {
    case .invalidClient: "client authentication failed"
    case .invalidRequest(let why), .invalidGrant(let why), .unauthorizedClient(let why), .invalidScope(let why): why
    }
  }

  var status: GoogleRPCStatus {
    GoogleRPCStatus(code: self.rpcErrorCode, message: self.rpcErrorMessage, details: [.errorInfo(reason: self.code, domain: "auth.quizwire")])
  }

  var rpcErrorCode: RPCError.Code {
    switch self {
    case .invalidClient: .unauthenticated
    case .unauthorizedClient: .permissionDenied
    case .invalidRequest, .invalidGrant, .invalidScope: .invalidArgument
    }
  }

  var rpcErrorMessage: String { "\(self.code): \(self.why)" }
  var rpcErrorMetadata: Metadata { self.status.rpcErrorMetadata }
}

extension AuthService {
  package func registerClient(request: Auth_V1_RegisterClientRequest, context: ServerContext) async throws -> Auth_V1_RegisterClientResponse {
    // Fields are validated (AuthValidation).
    let clientID = "cl_" + RandomTokens.id()
    let secret = request.confidential ? "cs_" + RandomTokens.random() : ""
    let grants = Set(request.grantTypes)
    let record = OAuthClientRecord(
      clientID: clientID, secretHash: request.confidential ? RandomTokens.digest(secret) : nil, name: request.name,
      redirectURIs: request.redirectUris, grantTypes: grants, scopes: Set(request.scopes), createdAtMs: self.nowMs(),
      isInternal: request.internalService)
    let details = ["internal": String(request.internalService), "grant_types": grants.sorted().joined(separator: " ")]
    try await self.audit.recording("oauth_client.register", target: clientID, details: details) {
      try await self.db.transaction { uow in try await self.clients.insert(record, in: uow) }
    }
    return .with {
      $0.clientID = clientID
      $0.clientSecret = secret
    }
  }

  /// Makes sure `clientID` is an internal, confidential client-credentials client whose
  /// secret is `secret`: creates it when absent, re-keys or promotes it when it differs,
  /// leaves it alone otherwise. Run at start (`quizwire up`) for the suite's own services;
  /// safe to run on every start and from several replicas at once.
  package func ensureInternalClient(clientID: String, name: String, secret: String) async throws {
    guard Self.isValidClientID(clientID), !secret.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "an internal client needs an id of 1–64 of A-Z a-z 0-9 . _ : - and a secret")
    }
    let digest = RandomTokens.digest(secret)
    enum Change: String, Sendable { case created, updated, unchanged }
    var attempt = 0
    while true {
      attempt += 1
      do {
        let change = try await self.db.transaction { uow -> Change in
          guard let existing = try await self.clients.find(clientID: clientID, in: uow) else {
            try await self.clients.insert(
              OAuthClientRecord(
                clientID: clientID, secretHash: digest, name: name, redirectURIs: [], grantTypes: ["client_credentials"], scopes: [],
                createdAtMs: self.nowMs(), isInternal: true), in: uow)
            return .created
          }
          var wanted = existing
          wanted.isInternal = true
          wanted.name = name
          wanted.grantTypes.insert("client_credentials")
          if existing.secretHash.map({ !RandomTokens.equalDigests($0, digest) }) ?? true { wanted.secretHash = digest }
          guard wanted != existing else { return .unchanged }
          _ = try await self.clients.update(wanted, in: uow)
          return .updated
        }
        if change != .unchanged {
          self.audit.record("oauth_client.ensure_internal", target: clientID, details: ["change": change.rawValue], by: "system")
        }
        return
      } catch StorageError.uniqueViolation where attempt < 3 {
        // Another replica created it between our read and insert: look again.
        continue
      }
    }
  }

  package func clientCredentials(request: Auth_V1_ClientCredentialsRequest, context: ServerContext) async throws -> Auth_V1_TokenResponse {
    let client = try await self.authenticateClient(id: request.clientID, secret: request.clientSecret, requireSecret: true)
    guard client.grantTypes.contains("client_credentials") else { throw OAuthError.unauthorizedClient("client_credentials not allowed for this client") }
    let scope = try Self.grantedScope(requested: request.scope, allowed: client.scopes)
    // Only internal clients' tokens are marked (and carry the service role): any other
    // client is a plain client principal, never a service.
    let token = try await self.accessToken(
      sub: client.clientID, roles: client.isInternal ? ["service"] : [], clientID: client.clientID, scope: scope,
      internalService: client.isInternal)
    // No refresh token for client credentials (RFC 6749 §4.4.3): the client just asks again.
    return .with {
      $0.accessToken = token
      $0.expiresIn = self.config.accessTokenTTL.components.seconds
      $0.tokenType = "Bearer"
      $0.scope = scope
    }
  }

  package func authorize(request: Auth_V1_AuthorizeRequest, context: ServerContext) async throws -> Auth_V1_AuthorizeResponse {
    let principal = try Self.currentPrincipal()
    guard principal.kind == .user, principal.delegatedClient == nil else {
      throw RPCError(code: .permissionDenied, message: "only a signed-in user can authorize a client")
    }
    // OAuth protocol errors, not field violations: the client needs the RFC 6749 code.
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
    let code = "ac_" + RandomTokens.random()
    let now = self.nowMs()
    try await self.db.transaction { uow in
      try await self.tokens.insert(
        AuthCodeRecord(
          codeHash: RandomTokens.digest(code), clientID: client.clientID, userID: principal.subject, redirectURI: request.redirectUri,
          codeChallenge: request.codeChallenge, scope: scope, expiresAtMs: now + self.config.authCodeTTL.components.seconds * 1000,
          usedAtMs: nil, familyID: nil, createdAtMs: now), in: uow)
    }
    return .with {
      $0.code = code
      $0.expiresIn = self.config.authCodeTTL.components.seconds
    }
  }

  package func exchangeCode(request: Auth_V1_ExchangeCodeRequest, context: ServerContext) async throws -> Auth_V1_TokenResponse {
    let client = try await self.authenticateClient(id: request.clientID, secret: request.clientSecret, requireSecret: false)
    guard request.code.hasPrefix("ac_"), request.code.utf8.count < 200 else { throw OAuthError.invalidGrant("unknown code") }
    let hash = RandomTokens.digest(request.code)
    enum Outcome: Sendable { case issued(IssuedRefresh), refused(String), replayed(String?) }
    let outcome = try await self.db.transaction { uow -> Outcome in
      let now = self.nowMs()
      guard let code = try await self.tokens.find(codeHash: hash, in: uow), code.clientID == client.clientID else { return .refused("unknown code") }
      if code.usedAtMs != nil {
        // A replayed code: whoever holds it is not the client. Revoke what it produced.
        if let family = code.familyID { try await self.tokens.revokeFamily(family, nowMs: now, in: uow) }
        return .replayed(code.familyID)
      }
      guard code.expiresAtMs > now else { return .refused("code expired") }
      guard code.redirectURI == request.redirectUri else { return .refused("redirect_uri does not match the authorization request") }
      guard PKCE.verify(verifier: request.codeVerifier, challenge: code.codeChallenge) else { return .refused("code_verifier does not match") }
      let family = "f-" + RandomTokens.id()
      guard try await self.tokens.consume(codeHash: hash, familyID: family, nowMs: now, in: uow) else { return .replayed(nil) }
      guard let user = try await self.users.find(id: code.userID, in: uow) else { return .refused("user no longer exists") }
      return .issued(try await self.storeRefreshToken(for: user, clientID: client.clientID, scope: code.scope, familyID: family, in: uow))
    }
    switch outcome {
    case .issued(let issued): return try await self.tokenResponse(issued)
    case .refused(let why): throw OAuthError.invalidGrant(why)
    case .replayed(let family):
      self.logger.warning(
        "security: authorization code used twice; its tokens revoked",
        metadata: [
          "event": "auth_code_replay", "client_id": .string(client.clientID), "family_id": .string(family ?? "-"),
        ])
      throw OAuthError.invalidGrant("code already used")
    }
  }

  package func introspectToken(request: Auth_V1_IntrospectTokenRequest, context: ServerContext) async throws -> Auth_V1_IntrospectTokenResponse {
    if request.token.hasPrefix("rt_") {
      let now = self.nowMs()
      guard let token = try await self.db.read({ uow in try await self.tokens.find(tokenHash: RandomTokens.digest(request.token), in: uow) }),
        token.usedAtMs == nil, token.revokedAtMs == nil, token.expiresAtMs > now
      else { return .with { $0.active = false } }
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

  package func revokeToken(request: Auth_V1_RevokeTokenRequest, context: ServerContext) async throws -> Auth_V1_RevokeTokenResponse {
    // RFC 7009: unknown tokens are not an error. Access tokens live 15 minutes and are not
    // tracked server-side; revoking the refresh family ends the session.
    if request.token.hasPrefix("rt_") {
      try await self.db.transaction { uow in
        if let token = try await self.tokens.find(tokenHash: RandomTokens.digest(request.token), in: uow) {
          try await self.tokens.revokeFamily(token.familyID, nowMs: self.nowMs(), in: uow)
        }
      }
    }
    return .init()
  }

  package func rotateSigningKey(request: Auth_V1_RotateSigningKeyRequest, context: ServerContext) async throws -> Auth_V1_RotateSigningKeyResponse {
    let kid: String
    do {
      kid = try await self.keyRing.rotate()
    } catch {
      self.audit.record("signing_key.rotate", target: "-", outcome: AuditLog.Outcome(error))
      throw error
    }
    self.audit.record("signing_key.rotate", target: kid)
    return .with { $0.kid = kid }
  }

  func authenticateClient(id: String, secret: String, requireSecret: Bool) async throws -> OAuthClientRecord {
    guard Self.isValidClientID(id),
      let client = try await self.db.read({ uow in try await self.clients.find(clientID: id, in: uow) })
    else {
      throw OAuthError.invalidClient
    }
    if let stored = client.secretHash {
      guard RandomTokens.equalDigests(stored, RandomTokens.digest(secret)) else { throw OAuthError.invalidClient }
    } else if requireSecret {
      throw OAuthError.invalidClient
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
}
