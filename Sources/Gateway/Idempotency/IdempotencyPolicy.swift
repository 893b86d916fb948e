import Crypto
import Foundation

/// The rules of `Idempotency-Key` (IETF httpapi draft "The Idempotency-Key HTTP Header
/// Field"), with no I/O: which routes take it, what a valid key is, whose record a request
/// reads, which answers are kept, and what a second request with the same key gets.
public enum IdempotencyPolicy {
  /// How long a completed answer is replayed.
  public static let retention: Duration = .seconds(24 * 3600)
  /// How long a claim holds without an answer. A gateway that died mid-call leaves its claim
  /// "in flight"; after this the key is free again. Far above every route's deadline (the
  /// longest unary budget is seconds), so a live call is never overtaken.
  public static let lease: Duration = .seconds(60)
  /// The longest key, in characters (the issue's 1–255).
  public static let maxKeyLength = 255

  /// Creating routes whose answer carries a credential: a token, a refresh token, an API key
  /// secret. Their answers are never written to the gateway's database, so the header is
  /// ignored there. By method, not path: one list however the routes are spelled. A route test
  /// checks that every route whose response message has a credential field is listed.
  public static let credentialMethods: Set<String> = [
    "auth.v1.AuthService/Register",
    "auth.v1.AuthService/Login",
    "auth.v1.AuthService/Refresh",
    "auth.v1.AuthService/CreateAPIKey",
    "auth.v1.AuthService/RotateAPIKey",
    "auth.v1.AuthService/ClientCredentials",
    "auth.v1.AuthService/ExchangeCode",
  ]

  /// Whether `route` honours `Idempotency-Key`: a creating POST (201 in the route table) whose
  /// answer carries no credential. Elsewhere the header is ignored: reads, updates and deletes
  /// are idempotent or conditional (`If-Match`) already.
  public static func applies(to route: Route) -> Bool {
    route.verb == "POST" && route.successStatus == 201 && !self.credentialMethods.contains(route.method.fullName)
  }

  /// Why a header value is not a key (a 400).
  public struct KeyError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    public var description: String { self.message }
  }

  /// The key in `value`: bare (1–255 visible ASCII characters, no spaces) or an RFC 8941
  /// string (`"…"` with `\"` and `\\` escapes; printable ASCII inside; 1–255 characters once
  /// unescaped). Parameters (`;a=1`) and lists are refused.
  public static func parseKey(_ value: String) -> Result<String, KeyError> {
    let bytes = Array(value.utf8.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed())
    guard let first = bytes.first else { return .failure(KeyError(message: "Idempotency-Key is empty; send 1–255 visible characters")) }
    var key: [UInt8] = []
    if first == UInt8(ascii: "\"") {
      var index = 1
      var closed = false
      while index < bytes.count {
        let byte = bytes[index]
        if byte == UInt8(ascii: "\\") {
          guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\"") || bytes[index + 1] == UInt8(ascii: "\\") else {
            return .failure(KeyError(message: #"Idempotency-Key: in a quoted key only \" and \\ are escapes"#))
          }
          key.append(bytes[index + 1])
          index += 2
          continue
        }
        if byte == UInt8(ascii: "\"") {
          closed = true
          index += 1
          break
        }
        guard (0x20...0x7E).contains(byte) else {
          return .failure(KeyError(message: "Idempotency-Key: a quoted key holds printable ASCII characters only"))
        }
        key.append(byte)
        index += 1
      }
      guard closed else { return .failure(KeyError(message: "Idempotency-Key: the quoted key has no closing quote")) }
      guard index == bytes.count else {
        return .failure(KeyError(message: "Idempotency-Key takes one key; nothing may follow the closing quote (no parameters or lists)"))
      }
    } else {
      guard bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else {
        return .failure(KeyError(message: "Idempotency-Key: a bare key holds visible ASCII characters only (no spaces); quote it as \"…\" otherwise"))
      }
      key = bytes
    }
    guard !key.isEmpty else { return .failure(KeyError(message: "Idempotency-Key is empty; send 1–255 visible characters")) }
    guard key.count <= self.maxKeyLength else {
      return .failure(KeyError(message: "Idempotency-Key is \(key.count) characters long; at most \(self.maxKeyLength) are allowed"))
    }
    return .success(String(decoding: key, as: UTF8.self))
  }

  /// Whose records a request reads and writes: the verified user (bearer token), else the API
  /// key (by its SHA-256, never the key itself), else nobody — an anonymous request can't own a
  /// record, since anyone could then replay it.
  public static func caller(verifiedUser: String?, apiKey: String?) -> String? {
    if let verifiedUser, !verifiedUser.isEmpty { return "user:" + verifiedUser }
    if let apiKey, !apiKey.isEmpty { return "key:" + self.hex(SHA256.hash(data: Data(apiKey.utf8))) }
    return nil
  }

  /// What identifies "the same request" under one key besides method and path: the body bytes
  /// and the query string, hashed (SHA-256). Bytes, not parsed JSON: a client retries by
  /// resending what it sent.
  public static func fingerprint(body: Data, query: String) -> String {
    var hasher = SHA256()
    hasher.update(data: Data(query.utf8))
    hasher.update(data: [0])
    hasher.update(data: body)
    return self.hex(hasher.finalize())
  }

  /// Whether an answer is kept and replayed. Kept: success and final client errors. Not kept,
  /// so the client may retry with the same key: 5xx (the call may not have happened or may
  /// succeed later), 429 and 408/425 (try later), 499 (the client went away), 401 (fix the
  /// credentials and retry).
  public static func isStorable(status: Int) -> Bool {
    switch status {
    case 200..<300: true
    case 401, 408, 425, 429, 499: false
    case 400..<500: true
    default: false
    }
  }

  /// A request whose key is already claimed.
  public enum Conflict: Sendable, Hashable {
    /// The first request finished: its answer is replayed.
    case replay
    /// The key was used with another request (body or query): 422.
    case mismatch
    /// The first request is still running: 409, try again shortly.
    case inFlight
  }

  /// What a request meets when its key is claimed: `fingerprint` is this request's,
  /// `storedFingerprint` and `done` the record's. A mismatch wins over in-flight: whether the
  /// first request finishes or not, this one can never be its retry.
  public static func conflict(fingerprint: String, storedFingerprint: String, done: Bool) -> Conflict {
    if fingerprint != storedFingerprint { return .mismatch }
    return done ? .replay : .inFlight
  }

  static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    digest.map { String(format: "%02x", $0) }.joined()
  }
}
