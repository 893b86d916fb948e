import Crypto
import Foundation

/// One value of a row's sort key, as carried in a page token.
public enum KeysetValue: Sendable, Hashable, Codable {
  case int(Int64)
  case text(String)

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if let int = try? container.decode(Int64.self) {
      self = .int(int)
    } else {
      self = .text(try container.decode(String.self))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    switch self {
    case .int(let v): try container.encode(v)
    case .text(let v): try container.encode(v)
    }
  }
}

/// Where a page ended: the last row's values of the order's keys, then its id.
public struct KeysetPosition: Sendable, Hashable {
  public var values: [KeysetValue]
  public var id: String
  public init(values: [KeysetValue], id: String) {
    self.values = values
    self.id = id
  }
}

/// The columns a row is ordered by: what the handler hands back so the next page token
/// can be made from the page's last row (`QuizRecord.sortKey`).
public struct QuizSortKey: Sendable, Hashable {
  public var id: String
  public var createTimeMs: Int64
  public var updateTimeMs: Int64
  public var title: String
  public init(id: String, createTimeMs: Int64, updateTimeMs: Int64, title: String) {
    self.id = id
    self.createTimeMs = createTimeMs
    self.updateTimeMs = updateTimeMs
    self.title = title
  }

  /// This row's position under `order`: its values of the order's keys, then its id.
  public func position(in order: QuizOrder) -> KeysetPosition {
    KeysetPosition(
      values: order.keys.map { key in
        switch key.field {
        case .createTime: .int(self.createTimeMs)
        case .updateTime: .int(self.updateTimeMs)
        case .title: .text(self.title)
        }
      }, id: self.id)
  }
}

/// Opaque, tamper-evident page tokens: base64url of a version byte, a JSON payload (the
/// keyset position and a fingerprint of the query it belongs to) and an HMAC-SHA256 over
/// both. Every replica holds the same key (`QUIZWIRE_QUIZ_PAGE_TOKEN_KEY`), so any of them
/// continues a walk another started. A token that was altered, cut short, signed with
/// another key, or presented with another filter, order, `show_deleted` or caller scope
/// is INVALID_ARGUMENT — never a silently different page.
public struct PageTokenCodec: Sendable {
  private let key: SymmetricKey
  static let version: UInt8 = 1
  static let macLength = 32

  /// The key from a shared secret (at least 16 characters), through HKDF-SHA256 so a
  /// passphrase-like secret still yields a uniform key.
  public init(secret: String) throws(QuizQueryError) {
    guard secret.utf8.count >= 16 else { throw QuizQueryError(field: "page_token", reason: "the page-token key is shorter than 16 characters") }
    self.key = HKDF<SHA256>.deriveKey(
      inputKeyMaterial: SymmetricKey(data: Data(secret.utf8)), info: Data("quizwire quiz page token v1".utf8), outputByteCount: 32)
  }

  private struct Payload: Codable {
    /// Fingerprint of the query (hex SHA-256).
    var f: String
    /// The order keys' values of the last row.
    var k: [KeysetValue]
    /// The last row's id.
    var i: String
  }

  /// What a token is bound to: the normalized filter and order, `show_deleted` and the
  /// caller's read scope (e.g. "anonymous", "user:<id>", "admin") — each changes the rows a
  /// position is relative to.
  public static func fingerprint(filter: QuizFilter?, order: QuizOrder, showDeleted: Bool, scope: String) -> String {
    let text = ["v1", filter?.canonical ?? "", order.canonical, showDeleted ? "deleted" : "live", scope].joined(separator: "\n")
    return SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
  }

  public func encode(_ position: KeysetPosition, fingerprint: String) -> String {
    // Encoding a struct of strings and integers cannot fail.
    let json = (try? JSONEncoder().encode(Payload(f: fingerprint, k: position.values, i: position.id))) ?? Data()
    var bytes = Data([Self.version])
    bytes.append(json)
    bytes.append(contentsOf: HMAC<SHA256>.authenticationCode(for: bytes, using: self.key))
    return Base64URL.encode(bytes)
  }

  /// The position in `token`, checked against `fingerprint` and the shape of `order`.
  public func decode(_ token: String, fingerprint: String, order: QuizOrder) throws(QuizQueryError) -> KeysetPosition {
    func invalid(_ why: String) -> QuizQueryError { QuizQueryError(field: "page_token", reason: why) }
    guard token.utf8.count <= 4096, let bytes = Base64URL.decode(token), bytes.count > 1 + Self.macLength else {
      throw invalid("not a page token of this service")
    }
    let signed = bytes.prefix(bytes.count - Self.macLength)
    let mac = bytes.suffix(Self.macLength)
    guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: self.key) else {
      throw invalid("not a page token of this service (altered, truncated or issued under another key)")
    }
    guard signed.first == Self.version, let payload = try? JSONDecoder().decode(Payload.self, from: signed.dropFirst()) else {
      throw invalid("unsupported page token version")
    }
    guard payload.f == fingerprint else {
      throw invalid("the page token was issued for another filter, order_by or show_deleted; start again without it")
    }
    guard payload.k.count == order.keys.count,
      zip(payload.k, order.keys).allSatisfy({ value, key in
        switch (value, key.field) {
        case (.int, .createTime), (.int, .updateTime), (.text, .title): true
        default: false
        }
      })
    else { throw invalid("the page token does not match order_by") }
    return KeysetPosition(values: payload.k, id: payload.i)
  }
}

/// RFC 4648 §5 base64url without padding.
enum Base64URL {
  static func encode(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }

  static func decode(_ text: String) -> Data? {
    guard text.utf8.allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "=") }) else { return nil }
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
    // Only the canonical spelling: otherwise a changed final character can decode to the
    // same bytes (its low bits are unused), and a token would have several spellings.
    guard let data = Data(base64Encoded: base64), Self.encode(data) == text else { return nil }
    return data
  }
}
