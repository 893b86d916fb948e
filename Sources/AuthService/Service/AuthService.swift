import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage

/// `auth.v1.AuthService`: users and passwords, access and refresh tokens, API keys and the
/// OAuth 2.0 logic. Input rules live in AuthValidation.swift (checked by the validation
/// interceptor); errors carry their own status (`RPCErrorConvertible`). Callers learn no more
/// than they need (unknown user and wrong password read the same).
package struct AuthService: Auth_V1_AuthService.SimpleServiceProtocol {
  package struct Config: Sendable {
    package var issuer = "quizwire-auth"
    package var audience = "quizwire"
    package var accessTokenTTL: Duration = .seconds(900)
    package var refreshTokenTTL: Duration = .seconds(30 * 24 * 3600)
    package var authCodeTTL: Duration = .seconds(60)
    /// Consecutive failed logins before the account is locked for `lockout`.
    package var maxFailedLogins = 5
    package var lockout: Duration = .seconds(900)
    /// Emails that get the admin role when they register (bootstrapping the first admin).
    package var adminEmails: Set<String> = []
    package init() {}
  }

  let config: Config
  let db: Database
  let users: any UserRepository
  let tokens: any TokenRepository
  let keys: any KeyRepository
  let clients: any ClientRepository
  let hasher: PasswordHasher
  let keyRing: KeyRing
  let logger: Logger
  /// Role changes, key rotations, credentials issued or revoked, clients registered.
  let audit: AuditLog
  /// Every time the service reads (tokens, expiries, lockouts).
  let now: WallClock
  /// Verifies our own access tokens (introspection).
  let verifier: TokenVerifier

  /// - Parameters:
  ///   - audit: where security-relevant actions are recorded (JSON lines labelled "audit").
  ///   - now: the wall clock; tests pass a fake one. Give the `KeyRing` the same.
  package init(
    config: Config, db: Database, hasher: PasswordHasher, keyRing: KeyRing, logger: Logger,
    audit: AuditLog = AuditLog(), now: @escaping WallClock = Date.init,
    users: any UserRepository = SQLUserRepository(), tokens: any TokenRepository = SQLTokenRepository(),
    keys: any KeyRepository = SQLKeyRepository(), clients: any ClientRepository = SQLClientRepository()
  ) {
    self.config = config
    self.db = db
    self.hasher = hasher
    self.keyRing = keyRing
    self.logger = logger
    self.audit = audit
    self.now = now
    self.users = users
    self.tokens = tokens
    self.keys = keys
    self.clients = clients
    var verifierConfig = TokenVerifier.Config(issuer: config.issuer, audience: config.audience)
    verifierConfig.refreshInterval = .zero  // local, cached key ring: see AuthServer
    self.verifier = TokenVerifier(config: verifierConfig, source: StaticJWKSSource { try await keyRing.jwksJSON() }, now: now)
  }

  /// Epoch milliseconds by the service's clock.
  func nowMs() -> Int64 { self.now().epochMs }

  /// Who may call what, declared next to the handlers.
  package static var policies: AccessPolicies {
    typealias M = Auth_V1_AuthService.Method
    return AccessPolicies(
      [
        M.Register.descriptor: .public, M.Login.descriptor: .public, M.Refresh.descriptor: .public,
        M.Logout.descriptor: .public, M.GetJWKS.descriptor: .public,
        M.ClientCredentials.descriptor: .public, M.ExchangeCode.descriptor: .public,
        M.GetMe.descriptor: .authenticated, M.UpdateProfile.descriptor: .scope("profile:write"),
        M.BatchGetUsers.descriptor: .servicesOrUsers, M.CreateAPIKey.descriptor: .authenticated, M.ListAPIKeys.descriptor: .authenticated,
        M.RevokeAPIKey.descriptor: .authenticated, M.RotateAPIKey.descriptor: .authenticated, M.Authorize.descriptor: .authenticated,
        M.ListUsers.descriptor: .anyRole(["admin"]), M.SetRoles.descriptor: .anyRole(["admin"]),
        M.RegisterClient.descriptor: .anyRole(["admin"]), M.RotateSigningKey.descriptor: .anyRole(["admin"]),
        M.IntrospectToken.descriptor: .servicesOnly, M.RevokeToken.descriptor: .servicesOnly, M.CheckAPIKey.descriptor: .servicesOnly,
      ], fallback: .authenticated)
  }

  // MARK: Users

  package func register(request: Auth_V1_RegisterRequest, context: ServerContext) async throws -> Auth_V1_RegisterResponse {
    // The validation interceptor has checked the request; this guard only keeps a host run
    // without interceptors from going further with bad input.
    guard let email = EmailAddress.normalize(request.email) else { throw request.fieldViolations.error() }
    let displayName = request.displayName.trimmingCharacters(in: .whitespacesAndNewlines)
    let hash = try await self.hasher.hash(request.password)
    let now = self.nowMs()
    var roles: Set<String> = ["user"]
    if self.config.adminEmails.contains(email) { roles.insert("admin") }
    let user = UserRecord(
      id: "u-" + RandomTokens.id(), email: email, displayName: displayName.isEmpty ? String(email.split(separator: "@")[0]) : displayName,
      passwordHash: hash, roles: roles, failedLogins: 0, lockedUntilMs: 0, createdAtMs: now, updatedAtMs: now, profileVersion: 1)
    do {
      try await self.db.transaction { uow in
        try await self.users.insert(user, in: uow)
        try await self.emitRegistered(user, in: uow)
      }
    } catch StorageError.uniqueViolation {
      throw RPCError(code: .alreadyExists, message: "an account with this email already exists")
    }
    self.logger.info("user registered", metadata: ["user_id": .string(user.id)])
    return .with { $0.user = Self.message(user) }
  }

  package func login(request: Auth_V1_LoginRequest, context: ServerContext) async throws -> Auth_V1_TokenResponse {
    let refused = RPCError(code: .unauthenticated, message: "email or password is incorrect")
    // Not a validated message: any malformed sign-in must read like a wrong password.
    guard let email = EmailAddress.normalize(request.email), !request.password.isEmpty,
      request.password.utf8.count <= PasswordPolicy.maxBytes
    else {
      _ = try await self.hasher.verifyAgainstDummy(request.password)
      throw refused
    }
    let found = try await self.db.read { uow in try await self.users.find(email: email, in: uow) }
    guard let user = found else {
      // Same work as a real check, so timing doesn't tell whether the email exists.
      _ = try await self.hasher.verifyAgainstDummy(request.password)
      throw refused
    }
    let now = self.nowMs()
    if user.lockedUntilMs > now {
      _ = try await self.hasher.verifyAgainstDummy(request.password)
      throw RPCError(code: .resourceExhausted, message: "too many failed sign-ins; try again later")
    }
    let result = try await self.hasher.verify(request.password, against: user.passwordHash)
    guard result.matches else {
      // Counted in the database, atomically: parallel wrong guesses can't all see the same count.
      let until = now + self.config.lockout.components.seconds * 1000
      let locked = try await self.db.transaction { uow in
        try await self.users.recordFailedLogin(id: user.id, maxFailures: self.config.maxFailedLogins, lockUntilMs: until, in: uow)
      }
      if locked { self.logger.warning("account locked after failed sign-ins", metadata: ["user_id": .string(user.id)]) }
      throw refused
    }
    if result.needsRehash {
      // Old parameters (or an imported bcrypt hash): store today's.
      let upgraded = try await self.hasher.hash(request.password)
      try await self.db.transaction { uow in try await self.users.setPasswordHash(id: user.id, hash: upgraded, nowMs: now, in: uow) }
    }
    let issued = try await self.db.transaction { uow in
      // Locked meanwhile by parallel wrong guesses? Then this sign-in doesn't count either.
      guard let current = try await self.users.find(id: user.id, in: uow), current.lockedUntilMs <= now else { return IssuedRefresh?.none }
      if current.failedLogins != 0 || current.lockedUntilMs != 0 {
        try await self.users.recordLogin(id: user.id, failedLogins: 0, lockedUntilMs: 0, in: uow)
      }
      return try await self.storeRefreshToken(for: current, clientID: nil, scope: "", familyID: nil, in: uow)
    }
    guard let issued else { throw RPCError(code: .resourceExhausted, message: "too many failed sign-ins; try again later") }
    return try await self.tokenResponse(issued)
  }

  package func refresh(request: Auth_V1_RefreshRequest, context: ServerContext) async throws -> Auth_V1_TokenResponse {
    try await self.rotateRefreshToken(request.refreshToken, clientID: nil)
  }

  package func logout(request: Auth_V1_LogoutRequest, context: ServerContext) async throws -> Auth_V1_LogoutResponse {
    let hash = RandomTokens.digest(request.refreshToken)
    try await self.db.transaction { uow in
      if let token = try await self.tokens.find(tokenHash: hash, in: uow) {
        try await self.tokens.revokeFamily(token.familyID, nowMs: self.nowMs(), in: uow)
      }
    }
    // Unknown tokens get the same answer: logging out can't probe for valid tokens.
    return .init()
  }

  package func getJWKS(request: Auth_V1_GetJWKSRequest, context: ServerContext) async throws -> Auth_V1_GetJWKSResponse {
    let json = try await self.keyRing.jwksJSON()
    return .with { $0.jwksJson = json }
  }
}
