import Crypto

/// Hashes used to keep secrets out of memory caches and databases.
public enum Digests {
  /// Lower-case hex SHA-256 of the UTF-8 bytes.
  public static func sha256Hex(_ text: String) -> String {
    hex(SHA256.hash(data: Array(text.utf8)))
  }

  public static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for b in bytes {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
  }
}
