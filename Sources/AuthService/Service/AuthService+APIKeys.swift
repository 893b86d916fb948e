import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import Storage

extension AuthService {
  package func createAPIKey(request: Auth_V1_CreateAPIKeyRequest, context: ServerContext) async throws -> Auth_V1_CreateAPIKeyResponse {
    let principal = try Self.currentPrincipal()
    guard principal.kind == .user, principal.delegatedClient == nil else {
      self.audit.record("api_key.create", target: "-", outcome: .denied)
      throw RPCError(code: .permissionDenied, message: "only users create API keys")
    }
    // Name, scopes, rate and ttl are validated (AuthValidation); the clamp keeps the expiry
    // arithmetic from overflowing on a host run without interceptors.
    let now = self.nowMs()
    let ttl = min(max(request.ttlSeconds, 0), Self.maxKeyTTLSeconds)
    let (record, key) = Self.newKey(
      ownerID: principal.subject, name: request.name, scopes: request.scopes, rate: request.rateLimitPerSecond,
      expiresAtMs: ttl > 0 ? now + ttl * 1000 : nil, nowMs: now)
    try await self.audit.recording("api_key.create", target: record.id) {
      try await self.db.transaction { uow in try await self.keys.insert(record, in: uow) }
    }
    return .with {
      $0.apiKey = Self.message(record)
      $0.key = key
    }
  }

  package func listAPIKeys(request: Auth_V1_ListAPIKeysRequest, context: ServerContext) async throws -> Auth_V1_ListAPIKeysResponse {
    let owner = try await self.ownerID(of: try Self.currentPrincipal())
    let records = try await self.db.read { uow in try await self.keys.apiKeys(ownerID: owner, in: uow) }
    return .with { $0.apiKeys = records.map(Self.message) }
  }

  package func revokeAPIKey(request: Auth_V1_RevokeAPIKeyRequest, context: ServerContext) async throws -> Auth_V1_RevokeAPIKeyResponse {
    try await self.audit.recording("api_key.revoke", target: request.id) { () async throws -> Void in
      let owner = try await self.ownerID(of: try Self.currentPrincipal())
      let revoked = try await self.db.transaction { uow in
        try await self.keys.revokeAPIKey(id: request.id, ownerID: owner, nowMs: self.nowMs(), in: uow)
      }
      // Someone else's key reads as missing: no probing for key ids.
      guard revoked else { throw RPCError(code: .notFound, message: "no such active API key") }
    }
    return .init()
  }

  package func rotateAPIKey(request: Auth_V1_RotateAPIKeyRequest, context: ServerContext) async throws -> Auth_V1_CreateAPIKeyResponse {
    let principal = try Self.currentPrincipal()
    // Like creating one: only a signed-in user, not a key minting its own successor.
    guard principal.kind == .user, principal.delegatedClient == nil else {
      self.audit.record("api_key.rotate", target: request.id, outcome: .denied)
      throw RPCError(code: .permissionDenied, message: "only users rotate API keys")
    }
    let owner = principal.subject
    // overlap_seconds is validated (AuthValidation); clamped for hosts without interceptors.
    let overlap = request.overlapSeconds == 0 ? 3600 : min(max(request.overlapSeconds, 0), Self.maxKeyOverlapSeconds)
    let now = self.nowMs()
    let rotated: (APIKeyRecord, String)
    do {
      rotated = try await self.db.transaction { uow -> (APIKeyRecord, String) in
        guard let old = try await self.keys.apiKey(id: request.id, in: uow), old.ownerID == owner, old.revokedAtMs == nil,
          old.expiresAtMs.map({ $0 > now }) ?? true
        else { throw RPCError(code: .notFound, message: "no such active API key") }
        // The successor keeps the old key's lifetime: rotating never extends a key.
        let fresh = Self.newKey(ownerID: owner, name: old.name, scopes: old.scopes, rate: old.rateLimitPerSecond, expiresAtMs: old.expiresAtMs, nowMs: now)
        try await self.keys.insert(fresh.0, in: uow)
        // The old key keeps working through the overlap, so clients can switch without downtime.
        try await self.keys.expireAPIKey(id: old.id, atMs: min(old.expiresAtMs ?? .max, now + overlap * 1000), in: uow)
        return fresh
      }
    } catch {
      self.audit.record("api_key.rotate", target: request.id, outcome: AuditLog.Outcome(error))
      throw error
    }
    let (record, key) = rotated
    self.audit.record("api_key.rotate", target: request.id, details: ["successor": record.id])
    return .with {
      $0.apiKey = Self.message(record)
      $0.key = key
    }
  }

  package func checkAPIKey(request: Auth_V1_CheckAPIKeyRequest, context: ServerContext) async throws -> Auth_V1_CheckAPIKeyResponse {
    guard let (record, user) = try await self.lookUpAPIKey(request.key) else { return .with { $0.valid = false } }
    return .with {
      $0.valid = true
      $0.keyID = record.id
      $0.ownerID = record.ownerID
      $0.roles = user.roles.sorted()
      $0.scopes = record.scopes
      $0.rateLimitPerSecond = record.rateLimitPerSecond
    }
  }

  /// The key's record and owner when `key` is a live API key.
  func lookUpAPIKey(_ key: String) async throws -> (APIKeyRecord, UserRecord)? {
    let parts = key.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
    guard key.utf8.count < 200, parts.count == 3, parts[0] == "qw", parts[1].count == 16 else { return nil }
    let now = self.nowMs()
    let found = try await self.db.read { uow -> (APIKeyRecord, UserRecord)? in
      guard let record = try await self.keys.apiKey(id: String(parts[1]), in: uow),
        RandomTokens.equalDigests(record.secretHash, RandomTokens.digest(String(parts[2]))),
        record.revokedAtMs == nil, record.expiresAtMs.map({ $0 > now }) ?? true,
        let user = try await self.users.find(id: record.ownerID, in: uow)
      else { return nil }
      return (record, user)
    }
    // Coarse last-use tracking: a write per minute per key at most, so checks stay reads.
    if let (record, _) = found, (record.lastUsedAtMs ?? 0) < now - 60_000 {
      try await self.db.transaction { uow in try await self.keys.touchAPIKey(id: record.id, nowMs: now, in: uow) }
    }
    return found
  }

  static func newKey(ownerID: String, name: String, scopes: [String], rate: Double, expiresAtMs: Int64?, nowMs: Int64) -> (APIKeyRecord, String) {
    let id = RandomTokens.id(bytes: 8)
    let secret = RandomTokens.random()
    let record = APIKeyRecord(
      id: id, secretHash: RandomTokens.digest(secret), ownerID: ownerID, name: name, scopes: scopes, rateLimitPerSecond: rate,
      createdAtMs: nowMs, expiresAtMs: expiresAtMs, revokedAtMs: nil, lastUsedAtMs: nil)
    return (record, "qw_\(id)_\(secret)")
  }

  static func message(_ k: APIKeyRecord) -> Auth_V1_APIKey {
    .with {
      $0.id = k.id
      $0.prefix = "qw_\(k.id)"
      $0.name = k.name
      $0.scopes = k.scopes
      $0.rateLimitPerSecond = k.rateLimitPerSecond
      $0.createdAtUnix = k.createdAtMs / 1000
      $0.expiresAtUnix = (k.expiresAtMs ?? 0) / 1000
      $0.revokedAtUnix = (k.revokedAtMs ?? 0) / 1000
      $0.lastUsedAtUnix = (k.lastUsedAtMs ?? 0) / 1000
    }
  }
}

/// API keys checked by the auth service itself (its own interceptor), without a network hop.
package struct LocalAPIKeyChecker: APIKeyChecker {
  let service: AuthService
  package init(service: AuthService) { self.service = service }

  package func principal(forAPIKey key: String) async throws -> Principal? {
    guard let (record, _) = try await self.service.lookUpAPIKey(key) else { return nil }
    // A key acts within its scopes, not with its owner's roles (an admin's quiz:read key
    // must not be an admin key).
    return Principal(
      kind: .apiKey, subject: record.id, roles: [], scopes: Set(record.scopes),
      rateLimit: record.rateLimitPerSecond > 0 ? RateLimit(perSecond: record.rateLimitPerSecond, burst: max(1, record.rateLimitPerSecond * 2)) : nil,
      keyOwner: record.ownerID)
  }
}
