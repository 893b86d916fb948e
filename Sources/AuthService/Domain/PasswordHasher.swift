import Crypto
import CryptoExtras
import Foundation
import GRPCCore
import HummingbirdBcrypt
import NIOConcurrencyHelpers
import NIOPosix

/// scrypt parameters, stored with every hash so they can be raised later.
package struct ScryptParameters: Sendable, Hashable {
  /// log2(N).
  package var logN: Int
  package var r: Int
  package var p: Int

  /// OWASP's scrypt choice (N=2^17, r=8, p=1): 128 MiB and a few hundred ms per hash.
  package static let production = ScryptParameters(logN: 17, r: 8, p: 1)

  package init(logN: Int, r: Int, p: Int) {
    self.logN = logN
    self.r = r
    self.p = p
  }

  var memoryBytes: Int { 128 * (1 << self.logN) * self.r * self.p }
}

package enum PasswordHashError: Error, Sendable, Hashable, RPCErrorConvertible {
  /// Too many hashes waiting already (a login flood); the caller should back off.
  case overloaded
  case unrecognizedHash

  package var rpcErrorCode: RPCError.Code {
    switch self {
    case .overloaded: .resourceExhausted
    case .unrecognizedHash: .internalError
    }
  }

  package var rpcErrorMessage: String {
    switch self {
    case .overloaded: "too many sign-ins in progress; retry shortly"
    case .unrecognizedHash: "stored password hash is unreadable"
    }
  }
}

/// Hashes and verifies passwords with scrypt (bcrypt hashes are accepted for imported
/// users and upgraded on their next login). Hashing runs on NIO's thread pool, never on the
/// cooperative pool, with at most `maxConcurrent` at once — each takes `memoryBytes` —
/// and at most `maxWaiting` queued; beyond that callers get `overloaded`.
package final class PasswordHasher: Sendable {
  package let parameters: ScryptParameters
  private let maxConcurrent: Int
  private let maxWaiting: Int
  private let pool: NIOThreadPool
  private let slots: NIOLockedValueBox<(running: Int, waiters: [CheckedContinuation<Void, Never>])>
  /// Verified against when the user doesn't exist, so both paths cost the same.
  private let dummyHash: String

  package init(parameters: ScryptParameters = .production, maxConcurrent: Int = 2, maxWaiting: Int = 64, pool: NIOThreadPool = .singleton) {
    self.parameters = parameters
    self.maxConcurrent = max(1, maxConcurrent)
    self.maxWaiting = maxWaiting
    self.pool = pool
    self.slots = NIOLockedValueBox((0, []))
    let salt = Array(repeating: UInt8(0x5A), count: 16)
    self.dummyHash =
      (try? Self.scrypt("not-a-real-password", salt: salt, parameters)).map {
        Self.encode(parameters, salt: salt, hash: $0)
      } ?? ""
  }

  /// A new hash in PHC-like form: `$scrypt$ln=17,r=8,p=1$<salt>$<hash>` (base64, no padding).
  package func hash(_ password: String) async throws -> String {
    let salt = SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }
    let parameters = self.parameters
    let derived = try await self.run { try Self.scrypt(password, salt: salt, parameters) }
    return Self.encode(parameters, salt: salt, hash: derived)
  }

  package struct Verification: Sendable, Hashable {
    package var matches: Bool
    /// The stored hash is weaker than today's parameters (or bcrypt): store a new one.
    package var needsRehash: Bool
  }

  /// Checks `password` against `stored` in constant time.
  package func verify(_ password: String, against stored: String) async throws -> Verification {
    if stored.hasPrefix("$2a$") || stored.hasPrefix("$2b$") || stored.hasPrefix("$2y$") {
      let ok = try await self.run { Bcrypt.verify(password, hash: stored) }
      return Verification(matches: ok, needsRehash: true)
    }
    guard let (parameters, salt, expected) = Self.decode(stored) else { throw PasswordHashError.unrecognizedHash }
    let derived = try await self.run { try Self.scrypt(password, salt: salt, parameters) }
    let matches = Self.constantTimeEqual(derived, expected)
    return Verification(matches: matches, needsRehash: matches && parameters != self.parameters)
  }

  /// Burns the same work as a real verification (unknown user), then answers false.
  package func verifyAgainstDummy(_ password: String) async throws -> Bool {
    _ = try await self.verify(password, against: self.dummyHash)
    return false
  }

  private func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await self.acquire()
    defer { self.release() }
    return try await self.pool.runIfActive(work)
  }

  private func acquire() async throws {
    enum Step { case go, wait, refuse }
    let step: Step = self.slots.withLockedValue { s in
      if s.running < self.maxConcurrent {
        s.running += 1
        return .go
      }
      return s.waiters.count < self.maxWaiting ? .wait : .refuse
    }
    switch step {
    case .go: return
    case .refuse: throw PasswordHashError.overloaded
    case .wait:
      await withCheckedContinuation { c in
        let resumeNow = self.slots.withLockedValue { s -> Bool in
          if s.running < self.maxConcurrent {
            s.running += 1
            return true
          }
          s.waiters.append(c)
          return false
        }
        if resumeNow { c.resume() }
      }
    }
  }

  private func release() {
    let next = self.slots.withLockedValue { s -> CheckedContinuation<Void, Never>? in
      if s.waiters.isEmpty {
        s.running -= 1
        return nil
      }
      return s.waiters.removeFirst()  // the slot passes straight to the next waiter
    }
    next?.resume()
  }

  static func scrypt(_ password: String, salt: [UInt8], _ p: ScryptParameters) throws -> [UInt8] {
    // An empty input would hand BoringSSL a null pointer; policy forbids empty passwords anyway.
    let bytes = password.isEmpty ? [0] : Array(password.utf8)
    let key = try KDF.Scrypt.deriveKey(from: bytes, salt: salt, outputByteCount: 32, rounds: 1 << p.logN, blockSize: p.r, parallelism: p.p)
    return key.withUnsafeBytes { Array($0) }
  }

  static func encode(_ p: ScryptParameters, salt: [UInt8], hash: [UInt8]) -> String {
    "$scrypt$ln=\(p.logN),r=\(p.r),p=\(p.p)$\(b64(salt))$\(b64(hash))"
  }

  static func decode(_ text: String) -> (ScryptParameters, [UInt8], [UInt8])? {
    let parts = text.split(separator: "$", omittingEmptySubsequences: true)
    guard parts.count == 4, parts[0] == "scrypt" else { return nil }
    var values: [String: Int] = [:]
    for pair in parts[1].split(separator: ",") {
      let kv = pair.split(separator: "=")
      guard kv.count == 2, let v = Int(kv[1]) else { return nil }
      values[String(kv[0])] = v
    }
    guard let ln = values["ln"], let r = values["r"], let p = values["p"], (1...24).contains(ln), (1...32).contains(r), (1...16).contains(p),
      let salt = unb64(String(parts[2])), let hash = unb64(String(parts[3])), hash.count == 32
    else { return nil }
    return (ScryptParameters(logN: ln, r: r, p: p), salt, hash)
  }

  static func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString().replacingOccurrences(of: "=", with: "") }

  static func unb64(_ text: String) -> [UInt8]? {
    let padded = text + String(repeating: "=", count: (4 - text.count % 4) % 4)
    return Data(base64Encoded: padded).map(Array.init)
  }

  static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
  }
}
