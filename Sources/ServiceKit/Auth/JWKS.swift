import Foundation
import JWTKit

/// One public key of an RFC 7517 JWK Set, as the auth service publishes it. Our own type
/// because jwt-kit's `JWK` drops `use`.
public struct PublishedJWK: Codable, Sendable, Hashable {
  public var kty: String
  public var crv: String?
  public var x: String?
  public var y: String?
  public var kid: String?
  public var alg: String?
  public var use: String?

  public init(kty: String, crv: String?, x: String?, y: String?, kid: String?, alg: String?, use: String?) {
    self.kty = kty
    self.crv = crv
    self.x = x
    self.y = y
    self.kid = kid
    self.alg = alg
    self.use = use
  }

  /// The JWK of an ES256 public key.
  public static func es256(_ key: ES256PublicKey, kid: String) -> PublishedJWK? {
    guard let p = key.parameters else { return nil }
    return PublishedJWK(kty: "EC", crv: "P-256", x: p.x, y: p.y, kid: kid, alg: "ES256", use: "sig")
  }
}

public struct PublishedJWKSet: Codable, Sendable, Hashable {
  public var keys: [PublishedJWK]
  public init(keys: [PublishedJWK]) { self.keys = keys }

  public func json() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(self)) ?? Data("{\"keys\":[]}".utf8), as: UTF8.self)
  }

  public static func parse(_ json: String) throws -> PublishedJWKSet {
    try JSONDecoder().decode(PublishedJWKSet.self, from: Data(json.utf8))
  }
}

/// Where a verifier gets the JWK Set from (the auth service's GetJWKS in production).
public protocol JWKSSource: Sendable {
  func fetchJWKS() async throws -> String
}

/// A fixed JWK Set (the auth service verifying its own tokens, and tests).
public struct StaticJWKSSource: JWKSSource {
  public let json: @Sendable () async throws -> String
  public init(_ json: @escaping @Sendable () async throws -> String) { self.json = json }
  public func fetchJWKS() async throws -> String { try await self.json() }
}
