import Crypto
import Foundation

/// PKCE (RFC 7636), S256 only.
package enum PKCE {
  /// 43–128 characters of [A-Za-z0-9-._~].
  package static func isValidVerifier(_ v: String) -> Bool {
    (43...128).contains(v.utf8.count)
      && v.utf8.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
      }
  }

  /// A challenge is BASE64URL(SHA256(verifier)): exactly 43 base64url characters.
  package static func isValidChallenge(_ c: String) -> Bool {
    c.utf8.count == 43
      && c.utf8.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
      }
  }

  package static func challenge(for verifier: String) -> String {
    Data(SHA256.hash(data: Array(verifier.utf8))).base64urlEncoded()
  }

  package static func verify(verifier: String, challenge: String) -> Bool {
    isValidVerifier(verifier) && RandomTokens.equalDigests(Self.challenge(for: verifier), challenge)
  }
}
