/// JSON text written by hand where Foundation's serializer costs too much: log lines, the
/// gateway's envelopes.
public enum JSONText {
  /// A JSON string literal for `text`, escaped as `JSONSerialization` does with
  /// `.withoutEscapingSlashes`: `"` and `\\`, the short escapes, other control characters as
  /// `\\u00XX`; everything else (non-ASCII included) as it is.
  public static func quoted(_ text: String) -> String {
    // Ids, names and most messages need no escape at all.
    if text.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x22 && $0 != 0x5C }) { return "\"" + text + "\"" }
    var out = "\""
    out.reserveCapacity(text.utf8.count + 8)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case let c where c.value < 0x20:
        let hex = String(c.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}
