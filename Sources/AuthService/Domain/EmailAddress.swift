import Foundation

/// Email addresses as HTML's `<input type=email>` accepts them (the WHATWG "valid e-mail
/// address"): a local part of `[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+`, `@`, then dot-separated
/// labels `[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?`. Two rules of ours on top: at least
/// two labels (no `a@localhost`), and RFC 5321's lengths (local part ≤ 64, whole ≤ 254).
package enum EmailAddress {
  /// The address trimmed and lower-cased, or nil when it isn't one.
  package static func normalize(_ raw: String) -> String? {
    let email = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    guard (3...254).contains(email.utf8.count) else { return nil }
    let parts = email.utf8.split(separator: UInt8(ascii: "@"), omittingEmptySubsequences: false)
    guard parts.count == 2, (1...64).contains(parts[0].count), parts[0].allSatisfy(Self.isLocalPartByte) else { return nil }
    let labels = parts[1].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    guard labels.count >= 2, labels.allSatisfy({ Self.isDomainLabel($0) }) else { return nil }
    return email
  }

  private static let localPartBytes = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-".utf8)

  static func isLocalPartByte(_ byte: UInt8) -> Bool { Self.localPartBytes.contains(byte) }

  static func isAlphanumeric(_ byte: UInt8) -> Bool {
    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
  }

  /// 1–63 letters, digits and hyphens, starting and ending with a letter or digit.
  static func isDomainLabel<Label: Collection<UInt8>>(_ label: Label) -> Bool {
    guard (1...63).contains(label.count), let first = label.first, Self.isAlphanumeric(first) else { return false }
    var last = first
    for byte in label {
      guard Self.isAlphanumeric(byte) || byte == UInt8(ascii: "-") else { return false }
      last = byte
    }
    return Self.isAlphanumeric(last)
  }
}
