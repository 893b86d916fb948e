import Foundation
import SQLKit
import Storage

/// A signing key: the private key sealed (AES-GCM) under the key-encryption key, the public
/// half as a JWK. The newest unretired key signs; retired keys keep verifying for a while.
package struct SigningKeyRecord: Sendable, Hashable {
  package var kid: String
  package var alg: String
  package var sealedPrivateKey: Data
  package var publicJWK: String
  package var createdAtMs: Int64
  package var retiredAtMs: Int64?
}

/// An API key: `qw_<id>_<secret>`, stored as the id and the secret's SHA-256.
package struct APIKeyRecord: Sendable, Hashable {
  package var id: String
  package var secretHash: String
  package var ownerID: String
  package var name: String
  package var scopes: [String]
  package var rateLimitPerSecond: Double
  package var createdAtMs: Int64
  package var expiresAtMs: Int64?
  package var revokedAtMs: Int64?
  package var lastUsedAtMs: Int64?
}

package protocol KeyRepository: Sendable {
  func insert(_ key: SigningKeyRecord, in uow: UnitOfWork) async throws
  /// Keys not retired before `retiredAfterMs`, newest first.
  func signingKeys(retiredAfterMs: Int64, in uow: UnitOfWork) async throws -> [SigningKeyRecord]
  func retireSigningKeys(except kid: String, nowMs: Int64, in uow: UnitOfWork) async throws

  func insert(_ key: APIKeyRecord, in uow: UnitOfWork) async throws
  func apiKey(id: String, in uow: UnitOfWork) async throws -> APIKeyRecord?
  func apiKeys(ownerID: String, in uow: UnitOfWork) async throws -> [APIKeyRecord]
  func revokeAPIKey(id: String, ownerID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool
  func expireAPIKey(id: String, atMs: Int64, in uow: UnitOfWork) async throws
  func touchAPIKey(id: String, nowMs: Int64, in uow: UnitOfWork) async throws
}

package struct SQLKeyRepository: KeyRepository {
  package init() {}

  package func insert(_ k: SigningKeyRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO signing_keys (kid, alg, sealed_private_key, public_jwk, created_at_ms, retired_at_ms)
      VALUES (\(bind: k.kid), \(bind: k.alg), \(bind: k.sealedPrivateKey), \(bind: k.publicJWK), \(bind: k.createdAtMs), \(bind: k.retiredAtMs))
      """)
  }

  package func signingKeys(retiredAfterMs: Int64, in uow: UnitOfWork) async throws -> [SigningKeyRecord] {
    try await uow.sql.raw(
      """
      SELECT kid, alg, sealed_private_key, public_jwk, created_at_ms, retired_at_ms FROM signing_keys
      WHERE retired_at_ms IS NULL OR retired_at_ms > \(bind: retiredAfterMs) ORDER BY created_at_ms DESC
      """
    ).all().map { row in
      SigningKeyRecord(
        kid: try row.decode(column: "kid", as: String.self),
        alg: try row.decode(column: "alg", as: String.self),
        sealedPrivateKey: try row.decode(column: "sealed_private_key", as: Data.self),
        publicJWK: try row.decode(column: "public_jwk", as: String.self),
        createdAtMs: try row.decode(column: "created_at_ms", as: Int64.self),
        retiredAtMs: try row.decode(column: "retired_at_ms", as: Int64?.self))
    }
  }

  package func retireSigningKeys(except kid: String, nowMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write("UPDATE signing_keys SET retired_at_ms = \(bind: nowMs) WHERE kid <> \(bind: kid) AND retired_at_ms IS NULL")
  }

  package func insert(_ k: APIKeyRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO api_keys (id, secret_hash, owner_id, name, scopes, rate_limit_per_second, created_at_ms, expires_at_ms, revoked_at_ms, last_used_at_ms)
      VALUES (\(bind: k.id), \(bind: k.secretHash), \(bind: k.ownerID), \(bind: k.name), \(bind: k.scopes.joined(separator: " ")),
              \(bind: k.rateLimitPerSecond), \(bind: k.createdAtMs), \(bind: k.expiresAtMs), \(bind: k.revokedAtMs), \(bind: k.lastUsedAtMs))
      """)
  }

  package func apiKey(id: String, in uow: UnitOfWork) async throws -> APIKeyRecord? {
    try await uow.sql.raw(
      """
      SELECT id, secret_hash, owner_id, name, scopes, rate_limit_per_second, created_at_ms, expires_at_ms, revoked_at_ms, last_used_at_ms
      FROM api_keys WHERE id = \(bind: id)
      """
    ).all().first.map(Self.decodeAPIKey)
  }

  package func apiKeys(ownerID: String, in uow: UnitOfWork) async throws -> [APIKeyRecord] {
    try await uow.sql.raw(
      """
      SELECT id, secret_hash, owner_id, name, scopes, rate_limit_per_second, created_at_ms, expires_at_ms, revoked_at_ms, last_used_at_ms
      FROM api_keys WHERE owner_id = \(bind: ownerID) ORDER BY created_at_ms, id
      """
    ).all().map(Self.decodeAPIKey)
  }

  package func revokeAPIKey(id: String, ownerID: String, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    !(try await uow.sql.raw(
      """
      UPDATE api_keys SET revoked_at_ms = \(bind: nowMs)
      WHERE id = \(bind: id) AND owner_id = \(bind: ownerID) AND revoked_at_ms IS NULL RETURNING id
      """
    ).all().isEmpty)
  }

  package func expireAPIKey(id: String, atMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write("UPDATE api_keys SET expires_at_ms = \(bind: atMs) WHERE id = \(bind: id)")
  }

  package func touchAPIKey(id: String, nowMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write("UPDATE api_keys SET last_used_at_ms = \(bind: nowMs) WHERE id = \(bind: id)")
  }

  static func decodeAPIKey(_ row: any SQLRow) throws -> APIKeyRecord {
    APIKeyRecord(
      id: try row.decode(column: "id", as: String.self),
      secretHash: try row.decode(column: "secret_hash", as: String.self),
      ownerID: try row.decode(column: "owner_id", as: String.self),
      name: try row.decode(column: "name", as: String.self),
      scopes: try row.decode(column: "scopes", as: String.self).split(separator: " ").map(String.init),
      rateLimitPerSecond: try row.decode(column: "rate_limit_per_second", as: Double.self),
      createdAtMs: try row.decode(column: "created_at_ms", as: Int64.self),
      expiresAtMs: try row.decode(column: "expires_at_ms", as: Int64?.self),
      revokedAtMs: try row.decode(column: "revoked_at_ms", as: Int64?.self),
      lastUsedAtMs: try row.decode(column: "last_used_at_ms", as: Int64?.self))
  }
}

/// A registered OAuth client.
package struct OAuthClientRecord: Sendable, Hashable {
  package var clientID: String
  /// nil for public clients (they rely on PKCE alone).
  package var secretHash: String?
  package var name: String
  package var redirectURIs: [String]
  package var grantTypes: Set<String>
  package var scopes: Set<String>
  package var createdAtMs: Int64
  /// One of the suite's own services: its client-credentials tokens are service principals.
  package var isInternal: Bool = false
}

package protocol ClientRepository: Sendable {
  func insert(_ client: OAuthClientRecord, in uow: UnitOfWork) async throws
  func find(clientID: String, in uow: UnitOfWork) async throws -> OAuthClientRecord?
  /// Replaces everything but the id and creation time; false when there is no such client.
  func update(_ client: OAuthClientRecord, in uow: UnitOfWork) async throws -> Bool
}

package struct SQLClientRepository: ClientRepository {
  package init() {}

  package func insert(_ c: OAuthClientRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO oauth_clients (client_id, secret_hash, name, redirect_uris, grant_types, scopes, created_at_ms, internal)
      VALUES (\(bind: c.clientID), \(bind: c.secretHash), \(bind: c.name), \(bind: c.redirectURIs.joined(separator: "\n")),
              \(bind: c.grantTypes.sorted().joined(separator: " ")), \(bind: c.scopes.sorted().joined(separator: " ")), \(bind: c.createdAtMs),
              \(bind: c.isInternal))
      """)
  }

  package func update(_ c: OAuthClientRecord, in uow: UnitOfWork) async throws -> Bool {
    !(try await uow.sql.raw(
      """
      UPDATE oauth_clients SET secret_hash = \(bind: c.secretHash), name = \(bind: c.name),
        redirect_uris = \(bind: c.redirectURIs.joined(separator: "\n")), grant_types = \(bind: c.grantTypes.sorted().joined(separator: " ")),
        scopes = \(bind: c.scopes.sorted().joined(separator: " ")), internal = \(bind: c.isInternal)
      WHERE client_id = \(bind: c.clientID) RETURNING client_id
      """
    ).all().isEmpty)
  }

  package func find(clientID: String, in uow: UnitOfWork) async throws -> OAuthClientRecord? {
    try await uow.sql.raw(
      """
      SELECT client_id, secret_hash, name, redirect_uris, grant_types, scopes, created_at_ms, internal FROM oauth_clients WHERE client_id = \(bind: clientID)
      """
    ).all().first.map { row in
      OAuthClientRecord(
        clientID: try row.decode(column: "client_id", as: String.self),
        secretHash: try row.decode(column: "secret_hash", as: String?.self),
        name: try row.decode(column: "name", as: String.self),
        redirectURIs: try row.decode(column: "redirect_uris", as: String.self).split(separator: "\n").map(String.init),
        grantTypes: Set(try row.decode(column: "grant_types", as: String.self).split(separator: " ").map(String.init)),
        scopes: Set(try row.decode(column: "scopes", as: String.self).split(separator: " ").map(String.init)),
        createdAtMs: try row.decode(column: "created_at_ms", as: Int64.self),
        isInternal: try row.decode(column: "internal", as: Bool.self))
    }
  }
}
