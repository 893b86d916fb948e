import Foundation

/// Reads string members of a JSON object's top level without parsing the rest: the gateway
/// needs a resource's `id`, `etag` and `state` for headers, and a full `JSONSerialization`
/// parse of every response (to throw it away) was the biggest single cost of a cached read.
/// The input is SwiftProtobuf's JSON output, so valid; anything unexpected ends the scan
/// with what was found so far.
enum TopLevelJSON {
  /// The string values of `keys` among the top-level members of `json` (an object).
  static func strings(_ json: String, keys: Set<String>) -> [String: String] {
    var json = json
    return json.withUTF8 { Self.strings(Array($0), keys: keys) }
  }

  static func strings(_ bytes: [UInt8], keys: Set<String>) -> [String: String] {
    var found: [String: String] = [:]
    var i = 0
    let n = bytes.count
    func skipSpace() { while i < n, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 } }
    /// At an opening quote: the index past the closing one, and whether escapes occur.
    func skipString() -> (end: Int, escaped: Bool)? {
      var j = i + 1
      var escaped = false
      while j < n {
        switch bytes[j] {
        case 0x5C: escaped = true; j += 2
        case 0x22: return (j + 1, escaped)
        default: j += 1
        }
      }
      return nil
    }
    /// Skips one value of any kind.
    func skipValue() -> Bool {
      guard i < n else { return false }
      switch bytes[i] {
      case 0x22:
        guard let (end, _) = skipString() else { return false }
        i = end
      case 0x7B, 0x5B:
        var depth = 0
        while i < n {
          switch bytes[i] {
          case 0x22:
            guard let (end, _) = skipString() else { return false }
            i = end
            continue
          case 0x7B, 0x5B: depth += 1
          case 0x7D, 0x5D:
            depth -= 1
            if depth == 0 {
              i += 1
              return true
            }
          default: break
          }
          i += 1
        }
        return false
      default:
        while i < n, bytes[i] != 0x2C, bytes[i] != 0x7D { i += 1 }
      }
      return true
    }

    skipSpace()
    guard i < n, bytes[i] == 0x7B else { return found }
    i += 1
    while true {
      skipSpace()
      guard i < n, bytes[i] == 0x22, let (keyEnd, keyEscaped) = skipString() else { return found }
      let key = keyEscaped ? nil : String(decoding: bytes[(i + 1)..<(keyEnd - 1)], as: UTF8.self)
      i = keyEnd
      skipSpace()
      guard i < n, bytes[i] == 0x3A else { return found }
      i += 1
      skipSpace()
      if let key, keys.contains(key), i < n, bytes[i] == 0x22, let (end, escaped) = skipString() {
        let raw = bytes[i..<end]
        found[key] =
          escaped
          ? (try? JSONSerialization.jsonObject(with: Data(raw), options: .fragmentsAllowed)) as? String
          : String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
        i = end
      } else if !skipValue() {
        return found
      }
      skipSpace()
      guard i < n else { return found }
      if bytes[i] == 0x2C {
        i += 1
        continue
      }
      return found
    }
  }
}
