import Crypto
import Foundation
import GRPCCore
import JWTKit
import NIOConcurrencyHelpers
import ServiceKit
import Storage

/// The auth service's signing keys: ES256 key pairs whose private halves are sealed with
/// AES-GCM under a key-encryption key from the environment (or a file). The newest key
/// signs; retired keys stay in the JWKS until every token they signed has expired.
package final class KeyRing: Sendable {
  package let accessTokenTTL: Duration
  private let db: Database
  private let keys: any KeyRepository
  private let kek: SymmetricKey
  private let cacheFor: Duration
  private let now: WallClock
  private let cache = NIOLockedValueBox<Cache?>(nil)

  private struct Cache: Sendable {
    var loadedAt: ContinuousClock.Instant
    var signingKid: String
    var signer: JWTKeyCollection
    var jwks: String
  }

  /// - Parameters:
  ///   - keyEncryptionKey: any high-entropy secret; the AES key is derived from it (HKDF).
  ///   - cacheFor: how long one replica trusts its view of the keys (others may rotate).
  ///   - now: the wall clock key times are stored in (the auth service's, in tests a fake).
  package init(
    db: Database, keys: any KeyRepository = SQLKeyRepository(), keyEncryptionKey: Secret,
    accessTokenTTL: Duration = .seconds(900), cacheFor: Duration = .seconds(10),
    now: @escaping WallClock = Date.init
  ) {
    self.db = db
    self.keys = keys
    self.kek = HKDF<SHA256>.deriveKey(
      inputKeyMaterial: SymmetricKey(data: Data(keyEncryptionKey.reveal().utf8)),
      info: Data("quizwire auth signing-key encryption v1".utf8), outputByteCount: 32)
    self.accessTokenTTL = accessTokenTTL
    self.cacheFor = cacheFor
    self.now = now
  }

  /// Makes the first key if there is none.
  package func ensureKey() async throws {
    let existing = try await self.db.read { uow in try await self.keys.signingKeys(retiredAfterMs: self.now().epochMs, in: uow) }
    if existing.isEmpty { _ = try await self.rotate() }
  }

  /// A new key signs from now on; the previous ones are retired (still published until
  /// their tokens have expired). Returns the new `kid`.
  @discardableResult
  package func rotate() async throws -> String {
    let key = P256.Signing.PrivateKey()
    let kid = "k-" + RandomTokens.id(bytes: 8)
    let sealed = try AES.GCM.seal(key.rawRepresentation, using: self.kek, authenticating: Data("signing-key:\(kid)".utf8))
    guard let combined = sealed.combined,
      let jwk = PublishedJWK.es256(try ES256PublicKey(backing: key.publicKey), kid: kid)
    else {
      throw SigningKeyError.cannotSeal
    }
    let now = self.now().epochMs
    let record = SigningKeyRecord(
      kid: kid, alg: "ES256", sealedPrivateKey: combined, publicJWK: String(decoding: try JSONEncoder().encode(jwk), as: UTF8.self),
      createdAtMs: now, retiredAtMs: nil)
    try await self.db.transaction { uow in
      try await self.keys.insert(record, in: uow)
      try await self.keys.retireSigningKeys(except: kid, nowMs: now, in: uow)
    }
    self.cache.withLockedValue { $0 = nil }
    return kid
  }

  /// Opens the signing key with the key-encryption key (fails when it is the wrong one).
  package func checkKeysOpen() async throws {
    self.cache.withLockedValue { $0 = nil }
    _ = try await self.current()
  }

  /// The RFC 7517 JWK Set of every key whose tokens may still be alive.
  package func jwksJSON() async throws -> String { try await self.current().jwks }

  /// Signs `claims` with the current key, header `typ: at+jwt` and its `kid`.
  package func sign(_ claims: AccessTokenClaims) async throws -> String {
    let current = try await self.current()
    var header = JWTHeader()
    header.typ = "at+jwt"
    return try await current.signer.sign(claims, kid: JWKIdentifier(string: current.signingKid), header: header)
  }

  private func current() async throws -> Cache {
    if let cached = self.cache.withLockedValue({ $0 }), ContinuousClock.now - cached.loadedAt < self.cacheFor { return cached }
    // Retired keys stay published for one token lifetime plus clock-skew margin.
    let ttlMs = self.accessTokenTTL.components.seconds * 1000
    let records = try await self.db.read { uow in
      try await self.keys.signingKeys(retiredAfterMs: self.now().epochMs - ttlMs - 300_000, in: uow)
    }
    guard let active = records.first(where: { $0.retiredAtMs == nil }) ?? records.first else { throw SigningKeyError.noSigningKey }
    let box = try AES.GCM.SealedBox(combined: active.sealedPrivateKey)
    let raw = try AES.GCM.open(box, using: self.kek, authenticating: Data("signing-key:\(active.kid)".utf8))
    let signer = JWTKeyCollection()
    await signer.add(ecdsa: try ES256PrivateKey(backing: P256.Signing.PrivateKey(rawRepresentation: raw)), kid: JWKIdentifier(string: active.kid))
    let published = try records.map { try JSONDecoder().decode(PublishedJWK.self, from: Data($0.publicJWK.utf8)) }
    let cache = Cache(loadedAt: .now, signingKid: active.kid, signer: signer, jwks: PublishedJWKSet(keys: published).json())
    self.cache.withLockedValue { $0 = cache }
    return cache
  }
}

/// Why the key ring can't sign: both are faults of the deployment, not of the caller.
package enum SigningKeyError: Error, Sendable, Hashable, RPCErrorConvertible {
  /// No key in the database (`ensureKey` runs at start, so the data was removed).
  case noSigningKey
  /// A new key could not be sealed or published.
  case cannotSeal

  package var rpcErrorCode: RPCError.Code { .internalError }

  package var rpcErrorMessage: String {
    switch self {
    case .noSigningKey: "no signing key available"
    case .cannotSeal: "cannot store a new signing key"
    }
  }
}
