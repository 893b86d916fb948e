import SQLKit
import Storage

/// A refresh token, stored by the SHA-256 of its value. Tokens of one login chain share a
/// family; reuse of a rotated token revokes the family.
package struct RefreshTokenRecord: Sendable, Hashable, Decodable {
  package var id: String
  package var tokenHash: String
  package var familyID: String
  package var userID: String
  package var clientID: String?
  package var scope: String
  package var expiresAtMs: Int64
  package var usedAtMs: Int64?
  package var revokedAtMs: Int64?
  package var createdAtMs: Int64

  // Columns by name; sql-kit's snake-casing would make `familyID` "family_iD", so
  // acronyms name their column.
  enum CodingKeys: String, CodingKey {
    case id, tokenHash, scope, expiresAtMs, usedAtMs, revokedAtMs, createdAtMs
    case familyID = "family_id", userID = "user_id", clientID = "client_id"
  }
}

/// A single-use OAuth authorization code, stored by its SHA-256.
package struct AuthCodeRecord: Sendable, Hashable, Decodable {
  package var codeHash: String
  package var clientID: String
  package var userID: String
  package var redirectURI: String
  package var codeChallenge: String
  package var scope: String
  package var expiresAtMs: Int64
  package var usedAtMs: Int64?
  /// The refresh-token family issued from this code (revoked if the code is replayed).
  package var familyID: String?
  package var createdAtMs: Int64

  enum CodingKeys: String, CodingKey {
    case codeHash, codeChallenge, scope, expiresAtMs, usedAtMs, createdAtMs
    case clientID = "client_id", userID = "user_id", redirectURI = "redirect_uri", familyID = "family_id"
  }
}

package protocol TokenRepository: Sendable {
  func insert(_ token: RefreshTokenRecord, in uow: UnitOfWork) async throws
  func find(tokenHash: String, in uow: UnitOfWork) async throws -> RefreshTokenRecord?
  /// Marks a token used if it was not yet; false when someone else used it first.
  func markUsed(id: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool
  /// Revokes every live token of a family; returns how many.
  @discardableResult func revokeFamily(_ familyID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Int
  @discardableResult func revokeAll(userID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Int

  func insert(_ code: AuthCodeRecord, in uow: UnitOfWork) async throws
  func find(codeHash: String, in uow: UnitOfWork) async throws -> AuthCodeRecord?
  /// Marks a code used and links the family issued from it; false when already used.
  func consume(codeHash: String, familyID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool

  /// Deletes refresh tokens that expired by `tokensExpiredByMs` and authorization codes that
  /// expired by `codesExpiredByMs`, at most `limit` of each; returns how many of each.
  func purgeExpired(tokensExpiredByMs: Int64, codesExpiredByMs: Int64, limit: Int, in uow: UnitOfWork) async throws -> (
    refreshTokens: Int, authCodes: Int
  )
}

package struct SQLTokenRepository: TokenRepository {
  package init() {}

  package func insert(_ t: RefreshTokenRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, client_id, scope, expires_at_ms, used_at_ms, revoked_at_ms, created_at_ms)
      VALUES (\(bind: t.id), \(bind: t.tokenHash), \(bind: t.familyID), \(bind: t.userID), \(bind: t.clientID), \(bind: t.scope),
              \(bind: t.expiresAtMs), \(bind: t.usedAtMs), \(bind: t.revokedAtMs), \(bind: t.createdAtMs))
      """)
  }

  package func find(tokenHash: String, in uow: UnitOfWork) async throws -> RefreshTokenRecord? {
    let rows = try await uow.sql.raw(
      """
      SELECT id, token_hash, family_id, user_id, client_id, scope, expires_at_ms, used_at_ms, revoked_at_ms, created_at_ms
      FROM refresh_tokens WHERE token_hash = \(bind: tokenHash)
      """
    ).all()
    return try rows.first?.decode(model: RefreshTokenRecord.self, keyDecodingStrategy: .convertFromSnakeCase)
  }

  package func markUsed(id: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    // The IS NULL guard makes this the single winner when two refreshes race.
    let rows = try await uow.sql.raw(
      """
      UPDATE refresh_tokens SET used_at_ms = \(bind: nowMs) WHERE id = \(bind: id) AND used_at_ms IS NULL RETURNING id
      """
    ).all()
    return !rows.isEmpty
  }

  package func revokeFamily(_ familyID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Int {
    try await uow.sql.raw(
      """
      UPDATE refresh_tokens SET revoked_at_ms = \(bind: nowMs) WHERE family_id = \(bind: familyID) AND revoked_at_ms IS NULL RETURNING id
      """
    ).all().count
  }

  package func revokeAll(userID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Int {
    try await uow.sql.raw(
      """
      UPDATE refresh_tokens SET revoked_at_ms = \(bind: nowMs) WHERE user_id = \(bind: userID) AND revoked_at_ms IS NULL RETURNING id
      """
    ).all().count
  }

  package func insert(_ c: AuthCodeRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, code_challenge, scope, expires_at_ms, used_at_ms, family_id, created_at_ms)
      VALUES (\(bind: c.codeHash), \(bind: c.clientID), \(bind: c.userID), \(bind: c.redirectURI), \(bind: c.codeChallenge),
              \(bind: c.scope), \(bind: c.expiresAtMs), \(bind: c.usedAtMs), \(bind: c.familyID), \(bind: c.createdAtMs))
      """)
  }

  package func find(codeHash: String, in uow: UnitOfWork) async throws -> AuthCodeRecord? {
    let rows = try await uow.sql.raw(
      """
      SELECT code_hash, client_id, user_id, redirect_uri, code_challenge, scope, expires_at_ms, used_at_ms, family_id, created_at_ms
      FROM auth_codes WHERE code_hash = \(bind: codeHash)
      """
    ).all()
    return try rows.first?.decode(model: AuthCodeRecord.self, keyDecodingStrategy: .convertFromSnakeCase)
  }

  package func purgeExpired(tokensExpiredByMs: Int64, codesExpiredByMs: Int64, limit: Int, in uow: UnitOfWork) async throws -> (
    refreshTokens: Int, authCodes: Int
  ) {
    let tokens = try await uow.sql.raw(
      """
      DELETE FROM refresh_tokens WHERE id IN (
        SELECT id FROM refresh_tokens WHERE expires_at_ms <= \(bind: tokensExpiredByMs) LIMIT \(bind: limit)) RETURNING id
      """
    ).all().count
    let codes = try await uow.sql.raw(
      """
      DELETE FROM auth_codes WHERE code_hash IN (
        SELECT code_hash FROM auth_codes WHERE expires_at_ms <= \(bind: codesExpiredByMs) LIMIT \(bind: limit)) RETURNING code_hash
      """
    ).all().count
    return (tokens, codes)
  }

  package func consume(codeHash: String, familyID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    let rows = try await uow.sql.raw(
      """
      UPDATE auth_codes SET used_at_ms = \(bind: nowMs), family_id = \(bind: familyID)
      WHERE code_hash = \(bind: codeHash) AND used_at_ms IS NULL RETURNING code_hash
      """
    ).all()
    return !rows.isEmpty
  }
}
