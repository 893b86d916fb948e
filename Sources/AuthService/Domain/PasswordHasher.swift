import Crypto
import CryptoExtras
import Foundation
import GRPCCore
import HummingbirdBcrypt
import Logging
import NIOPosix
import Storage

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
  /// Too many hashes waiting already (a sign-up or login flood); the caller should back off
  /// for `retryAfter`.
  case overloaded(retryAfter: Duration)
  case unrecognizedHash

  package var rpcErrorCode: RPCError.Code {
    switch self {
    case .overloaded: .resourceExhausted
    case .unrecognizedHash: .internalError
    }
  }

  package var rpcErrorMessage: String {
    switch self {
    case .overloaded(let retryAfter): "too many sign-ins in progress; retry after \(retryAfter.retryMilliseconds) ms"
    case .unrecognizedHash: "stored password hash is unreadable"
    }
  }

  /// A `google.rpc.RetryInfo` detail and `retry-after-ms`, as for a busy database.
  package var rpcErrorMetadata: Metadata {
    guard case .overloaded(let retryAfter) = self else { return [:] }
    return StorageError.retryMetadata(code: .resourceExhausted, message: self.rpcErrorMessage, retryAfter: retryAfter)
  }
}

/// Hashes and verifies passwords with scrypt (bcrypt hashes are accepted for imported
/// users and upgraded on their next login). Hashing runs on threads of its own — never the
/// cooperative pool, never NIO's shared blocking pool, whose threads the database and file
/// I/O need — with at most `maxConcurrent` at once (each takes `memoryBytes`). Up to
/// `maxWaiting` more wait in line as suspended tasks, leaving it if their call is cancelled;
/// beyond that callers get `overloaded` (RESOURCE_EXHAUSTED with RetryInfo).
package final class PasswordHasher: Sendable {
  package let parameters: ScryptParameters
  private let threads: NIOThreadPool
  /// Hands out the threads in arrival order; its snapshot is the queue depth on `/metrics`.
  package let gate: BoundedGate
  private let contention: ContentionLog?
  /// Verified against when the user doesn't exist, so both paths cost the same.
  private let dummyHash: String

  /// - Parameters:
  ///   - maxConcurrent: hashes at once, each on its own thread (more than the cores only
  ///     adds memory, not speed).
  ///   - maxWaiting: hashes that may wait in line; beyond that callers are refused.
  ///   - logger: where refusals are logged (a warning per second at most).
  package init(
    parameters: ScryptParameters = .production, maxConcurrent: Int = 2, maxWaiting: Int = 64, logger: Logger? = nil
  ) {
    self.parameters = parameters
    let permits = max(1, maxConcurrent)
    self.threads = NIOThreadPool(numberOfThreads: permits)
    self.threads.start()
    // A queued hash waits as long as its call lets it (the default deadline is 30 s);
    // cancellation takes it out of the line sooner.
    self.gate = BoundedGate(name: "password_hashing", limits: .init(permits: permits, maxWaiting: maxWaiting, waitTimeout: .seconds(30)))
    self.contention = logger.map { ContentionLog(logger: $0) }
    let salt = Array(repeating: UInt8(0x5A), count: 16)
    self.dummyHash =
      (try? Self.scrypt("not-a-real-password", salt: salt, parameters)).map {
        Self.encode(parameters, salt: salt, hash: $0)
      } ?? ""
  }

  deinit {
    // Nothing can be queued any more (no references are left): just let the threads go.
    self.threads.shutdownGracefully { _ in }
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
    do {
      return try await self.gate.withPermit { try await self.threads.runIfActive(work) }
    } catch let refusal as BoundedGate.Refusal {
      self.contention?.warn(
        "password hashing saturated; call refused with RESOURCE_EXHAUSTED", cause: "password_hashing_\(refusal.reason.rawValue)",
        metadata: ["waiting": .stringConvertible(refusal.waiting), "retry_after_ms": .stringConvertible(refusal.retryAfter.retryMilliseconds)])
      throw PasswordHashError.overloaded(retryAfter: refusal.retryAfter)
    }
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
