import Crypto
import Foundation
import ServiceKit

/// The random credentials the auth service hands out — refresh tokens, API-key and client
/// secrets, authorization codes, ids — and how they are kept at rest. (ServiceKit's `Secret`
/// is something else: a configured secret that never prints.)
package enum RandomTokens {
  /// `bytes` random bytes, base64url without padding.
  package static func random(bytes: Int = 32) -> String {
    let key = SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8))
    return key.withUnsafeBytes { Data($0).base64urlEncoded() }
  }

  /// A short random id (lower-case hex).
  package static func id(bytes: Int = 12) -> String {
    SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8)).withUnsafeBytes { Digests.hex($0) }
  }

  /// How tokens are kept at rest: SHA-256, hex. (They are 256-bit random, so a fast hash is
  /// enough; a password needs scrypt.)
  package static func digest(_ token: String) -> String { Digests.sha256Hex(token) }

  package static func equalDigests(_ a: String, _ b: String) -> Bool {
    PasswordHasher.constantTimeEqual(Array(a.utf8), Array(b.utf8))
  }
}

extension Data {
  /// base64url without padding (RFC 4648 §5), as JWTs, PKCE and our tokens use it.
  func base64urlEncoded() -> String {
    self.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }
}
