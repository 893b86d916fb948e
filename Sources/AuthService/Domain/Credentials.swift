import Crypto
import Foundation
import ServiceKit

/// The rules for what users may submit.
public enum CredentialRules {
  public static let minPasswordLength = 10
  /// Long enough for any passphrase, short enough that hashing can't be abused.
  public static let maxPasswordLength = 1024

  /// A small list of the most common passwords of policy length (from public breach top
  /// lists); a real deployment can add a bigger list, the rule stays the same.
  static let commonPasswords: Set<String> = [
    "1234567890", "12345678910", "123456789a", "qwertyuiop", "1q2w3e4r5t", "password12", "password123",
    "password1234", "passw0rd123", "iloveyou12", "abcdefghij", "0987654321", "1111111111", "0000000000",
    "qwerty1234", "qwerty123456", "1qaz2wsx3edc", "asdfghjkl1", "zxcvbnm123", "letmein123", "welcome123",
    "admin12345", "administrator", "football123", "baseball123", "superman123", "princess123", "sunshine123",
    "trustno1234", "dragon1234", "monkey1234", "starwars123", "whatever123", "changeme123", "p@ssw0rd123",
    "Password123", "Password1!", "Passw0rd!!", "qwertyuiop123", "q1w2e3r4t5", "1234qwerasdf", "aaaaaaaaaa",
    "abc1234567", "abcd123456", "michael123", "jennifer123", "computer123", "internet123", "quizwire123",
  ]

  /// Lower-cased, trimmed email, or nil when it isn't a plausible address.
  public static func normalizeEmail(_ raw: String) -> String? {
    let email = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    guard (3...254).contains(email.utf8.count) else { return nil }
    let parts = email.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, parts[0].utf8.count <= 64, parts[1].contains("."),
          !parts[1].hasPrefix("."), !parts[1].hasSuffix(".") else { return nil }
    let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: ".!#$%&'*+/=?^_`{|}~-@"))
    guard email.unicodeScalars.allSatisfy({ allowed.contains($0) && $0.isASCII }) else { return nil }
    return email
  }

  /// Password policy violations (empty: acceptable).
  public static func passwordViolations(_ password: String, email: String?) -> [String] {
    var problems: [String] = []
    if password.count < Self.minPasswordLength { problems.append("must be at least \(Self.minPasswordLength) characters") }
    if password.utf8.count > Self.maxPasswordLength { problems.append("must be at most \(Self.maxPasswordLength) bytes") }
    if Self.commonPasswords.contains(password) || Self.commonPasswords.contains(password.lowercased()) {
      problems.append("is too common")
    }
    if let email, password.lowercased() == email { problems.append("must not be the email address") }
    return problems
  }

  public static let roles: Set<String> = ["user", "author", "admin"]
}

/// Random secrets and how they are stored.
public enum Secrets {
  /// `bytes` random bytes, base64url without padding.
  public static func random(bytes: Int = 32) -> String {
    let key = SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8))
    return key.withUnsafeBytes { base64url(Data($0)) }
  }

  /// A short random id (lower-case hex).
  public static func id(bytes: Int = 12) -> String {
    SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8)).withUnsafeBytes { Digests.hex($0) }
  }

  /// How secrets are kept at rest: SHA-256, hex. (They are 256-bit random, so a fast hash
  /// is enough; a password needs scrypt.)
  public static func digest(_ secret: String) -> String { Digests.sha256Hex(secret) }

  public static func equalDigests(_ a: String, _ b: String) -> Bool {
    PasswordHasher.constantTimeEqual(Array(a.utf8), Array(b.utf8))
  }

  public static func base64url(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }
}

/// PKCE (RFC 7636), S256 only.
public enum PKCE {
  /// 43–128 characters of [A-Za-z0-9-._~].
  public static func isValidVerifier(_ v: String) -> Bool {
    (43...128).contains(v.utf8.count) && v.utf8.allSatisfy { b in
      (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
    }
  }

  /// A challenge is BASE64URL(SHA256(verifier)): exactly 43 base64url characters.
  public static func isValidChallenge(_ c: String) -> Bool {
    c.utf8.count == 43 && c.utf8.allSatisfy { b in
      (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
    }
  }

  public static func challenge(for verifier: String) -> String {
    Secrets.base64url(Data(SHA256.hash(data: Array(verifier.utf8))))
  }

  public static func verify(verifier: String, challenge: String) -> Bool {
    isValidVerifier(verifier) && Secrets.equalDigests(Self.challenge(for: verifier), challenge)
  }
}
