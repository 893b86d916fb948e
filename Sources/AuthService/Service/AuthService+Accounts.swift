import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage

extension AuthService {
  package func getMe(request: Auth_V1_GetMeRequest, context: ServerContext) async throws -> Auth_V1_User {
    let principal = try Self.currentPrincipal()
    // Only users (and their API keys) have an account; services and clients act for themselves.
    guard principal.kind == .user || principal.kind == .apiKey,
      let user = try await self.db.read({ uow in try await self.users.find(id: self.ownerID(of: principal), in: uow) })
    else {
      throw RPCError(code: .notFound, message: "no user for this principal")
    }
    return Self.message(user)
  }

  package func listUsers(request: Auth_V1_ListUsersRequest, context: ServerContext) async throws -> Auth_V1_ListUsersResponse {
    // Limit and cursor are validated (AuthValidation); the clamp only keeps a host without
    // interceptors from asking the database for a negative page.
    let after = request.cursor.isEmpty ? nil : UserCursor.decode(request.cursor)
    let limit = request.limit == 0 ? 50 : Int(min(max(request.limit, 1), 200))
    // One extra row tells whether there is a next page.
    let rows = try await self.db.read { uow in try await self.users.list(after: after, limit: limit + 1, in: uow) }
    let page = rows.prefix(limit)
    return .with {
      $0.users = page.map(Self.message)
      if rows.count > limit, let last = page.last { $0.nextCursor = UserCursor.encode(createdAtMs: last.createdAtMs, id: last.id) }
    }
  }

  package func setRoles(request: Auth_V1_SetRolesRequest, context: ServerContext) async throws -> Auth_V1_User {
    let roles = Set(request.roles)
    let details = ["roles": roles.sorted().joined(separator: ",")]
    return try await self.audit.recording("user.set_roles", target: request.userID, details: details) { () async throws -> Auth_V1_User in
      let now = self.nowMs()
      let updated = try await self.db.transaction { uow -> UserRecord? in
        let change = try await self.users.setRoles(id: request.userID, roles: roles, nowMs: now, in: uow)
        if change == .notFound { return nil }
        // Roles are in access tokens: make the user sign in again to get the new ones.
        try await self.tokens.revokeAll(userID: request.userID, nowMs: now, in: uow)
        // Last: an outbox append serializes the transactions that append from here on.
        if case .changed(let version) = change {
          try await self.emitRolesChanged(userID: request.userID, roles: roles, version: version, nowMs: now, in: uow)
        }
        return try await self.users.find(id: request.userID, in: uow)
      }
      guard let updated else { throw RPCError(code: .notFound, message: "no such user") }
      return Self.message(updated)
    }
  }

  // MARK: Shared helpers

  /// A refresh token stored in the current unit of work, and what its access token needs.
  /// The access token is signed after the transaction commits: signing may read the key
  /// ring from the database, and a second connection taken inside a transaction can starve
  /// the pool.
  struct IssuedRefresh: Sendable {
    var refreshToken: String
    var sub: String
    var roles: [String]
    var clientID: String?
    var scope: String
  }

  /// Stores a new refresh token (in `familyID`, or a new family).
  func storeRefreshToken(for user: UserRecord, clientID: String?, scope: String, familyID: String?, in uow: UnitOfWork) async throws -> IssuedRefresh {
    let refresh = "rt_" + RandomTokens.random()
    let now = self.nowMs()
    try await self.tokens.insert(
      RefreshTokenRecord(
        id: "rt-" + RandomTokens.id(), tokenHash: RandomTokens.digest(refresh), familyID: familyID ?? "f-" + RandomTokens.id(), userID: user.id,
        clientID: clientID, scope: scope, expiresAtMs: now + self.config.refreshTokenTTL.components.seconds * 1000,
        usedAtMs: nil, revokedAtMs: nil, createdAtMs: now), in: uow)
    // A token a client holds on the user's behalf acts within its scope, never with the
    // user's roles (an app approved for quiz:read must not be able to act as an admin).
    let roles = clientID == nil ? user.roles.sorted() : []
    return IssuedRefresh(refreshToken: refresh, sub: user.id, roles: roles, clientID: clientID, scope: scope)
  }

  /// The token response for a stored refresh token: signs its access token.
  func tokenResponse(_ issued: IssuedRefresh) async throws -> Auth_V1_TokenResponse {
    let access = try await self.accessToken(sub: issued.sub, roles: issued.roles, clientID: issued.clientID, scope: issued.scope, internalService: false)
    return .with {
      $0.accessToken = access
      $0.refreshToken = issued.refreshToken
      $0.expiresIn = self.config.accessTokenTTL.components.seconds
      $0.tokenType = "Bearer"
      $0.scope = issued.scope
    }
  }

  /// A signed access token. `internalService` marks client-credentials tokens of internal
  /// clients (the claim is left out otherwise).
  func accessToken(sub: String, roles: [String], clientID: String?, scope: String, internalService: Bool) async throws -> String {
    let now = Int64(self.now().timeIntervalSince1970)
    let claims = AccessTokenClaims(
      sub: sub, iss: self.config.issuer, aud: [self.config.audience], exp: now + self.config.accessTokenTTL.components.seconds,
      iat: now, jti: RandomTokens.id(bytes: 16), clientID: clientID, roles: roles, scope: scope.isEmpty ? nil : scope,
      internalService: internalService ? true : nil)
    return try await self.keyRing.sign(claims)
  }

  /// Rotates a refresh token: the old one is spent, a new one in the same family comes back.
  /// Presenting a spent or revoked token revokes the whole family (someone has a copy).
  func rotateRefreshToken(_ presented: String, clientID: String?) async throws -> Auth_V1_TokenResponse {
    let invalid = RPCError(code: .unauthenticated, message: "invalid refresh token")
    guard presented.hasPrefix("rt_"), presented.utf8.count < 200 else { throw invalid }
    let hash = RandomTokens.digest(presented)
    enum Outcome: Sendable { case issued(IssuedRefresh), refused, reused(familyID: String, userID: String) }
    let outcome = try await self.db.transaction { uow -> Outcome in
      let now = self.nowMs()
      guard let token = try await self.tokens.find(tokenHash: hash, in: uow) else { return .refused }
      if let clientID, token.clientID != clientID { return .refused }
      if token.revokedAtMs != nil || token.expiresAtMs <= now { return .refused }
      guard token.usedAtMs == nil, try await self.tokens.markUsed(id: token.id, nowMs: now, in: uow) else {
        try await self.tokens.revokeFamily(token.familyID, nowMs: now, in: uow)
        return .reused(familyID: token.familyID, userID: token.userID)
      }
      guard let user = try await self.users.find(id: token.userID, in: uow) else { return .refused }
      return .issued(try await self.storeRefreshToken(for: user, clientID: token.clientID, scope: token.scope, familyID: token.familyID, in: uow))
    }
    switch outcome {
    case .issued(let issued): return try await self.tokenResponse(issued)
    case .refused: throw invalid
    case .reused(let family, let user):
      self.logger.warning(
        "security: refresh token reused; token family revoked",
        metadata: [
          "event": "refresh_token_reuse", "family_id": .string(family), "user_id": .string(user),
        ])
      throw invalid
    }
  }

  static func currentPrincipal() throws -> Principal {
    guard let principal = ServiceContext.current?.call?.principal else {
      throw RPCError(code: .unauthenticated, message: "authentication required")
    }
    return principal
  }

  /// The user a principal acts for (an API key acts for its owner).
  func ownerID(of principal: Principal) async throws -> String {
    guard principal.kind == .apiKey else { return principal.subject }
    guard let key = try await self.db.read({ uow in try await self.keys.apiKey(id: principal.subject, in: uow) }) else {
      throw RPCError(code: .unauthenticated, message: "API key no longer exists")
    }
    return key.ownerID
  }

  static func message(_ user: UserRecord) -> Auth_V1_User {
    .with {
      $0.id = user.id
      $0.email = user.email
      $0.displayName = user.displayName
      $0.roles = user.roles.sorted()
      $0.createdAtUnix = user.createdAtMs / 1000
    }
  }
}

/// Opaque list cursor: base64url of "created_at_ms:id".
enum UserCursor {
  static func encode(createdAtMs: Int64, id: String) -> String { Data("\(createdAtMs):\(id)".utf8).base64urlEncoded() }

  static func decode(_ cursor: String) -> (createdAtMs: Int64, id: String)? {
    var text = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    text += String(repeating: "=", count: (4 - text.count % 4) % 4)
    guard cursor.utf8.count <= 200, let data = Data(base64Encoded: text), let plain = String(data: data, encoding: .utf8) else { return nil }
    let parts = plain.split(separator: ":", maxSplits: 1)
    guard parts.count == 2, let ms = Int64(parts[0]), parts[1].hasPrefix("u-") else { return nil }
    return (ms, String(parts[1]))
  }
}
