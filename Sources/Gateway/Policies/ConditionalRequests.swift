import Foundation

/// Entity tags and `Link` for the gateway's caching headers (RFC 9110 §8.8.3, §13; RFC 8288),
/// free of HTTP types so they are tested without sockets.
public enum ConditionalRequests {
  /// What an `If-Match` header asks of a write.
  public enum IfMatch: Sendable, Hashable {
    /// `*`: any current version; the service checks nothing.
    case any
    /// One strong tag, passed to the request's `etag` field.
    case etag(String)
  }

  /// `"<etag>"` for a resource's etag, or nil when it can't be quoted (empty, or containing
  /// a quote or a control character).
  public static func entityTag(_ etag: String) -> String? {
    guard !etag.isEmpty, etag.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0 != "\"" && $0.value != 0x7F }) else { return nil }
    return "\"\(etag)\""
  }

  /// Parses `If-Match`. The services take one etag per write, and `If-Match` compares strongly,
  /// so a weak tag or a list of several is refused rather than silently ignored.
  public static func ifMatch(_ header: String) -> IfMatch? {
    let value = header.trimmingCharacters(in: .whitespaces)
    if value == "*" { return .any }
    guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else { return nil }
    let inner = value.dropFirst().dropLast()
    guard !inner.isEmpty, !inner.contains("\"") else { return nil }
    return .etag(String(inner))
  }

  /// Whether `If-None-Match` matches the current `etag` (weak comparison, as §13.1.2 asks):
  /// `*`, or any listed tag with the same opaque value, `W/` or not.
  public static func noneMatchMatches(_ header: String, etag: String) -> Bool {
    guard !etag.isEmpty else { return false }
    for item in header.split(separator: ",") {
      var tag = item.trimmingCharacters(in: .whitespaces)
      if tag == "*" { return true }
      if tag.hasPrefix("W/") { tag.removeFirst(2) }
      if tag == "\"\(etag)\"" { return true }
    }
    return false
  }

  /// `<path?query>; rel="next"` for the next page: the same path and query, its `cursor`
  /// replaced. `page_token` (the field's own name) and `offset` go too: the cursor
  /// supersedes both.
  public static func nextLink(path: String, query: [(String, String)], cursor: String) -> String {
    var items = query.filter { !["cursor", "page_token", "pageToken", "offset"].contains($0.0) }
    items.append(("cursor", cursor))
    let encoded = items.map { Self.encode($0.0) + "=" + Self.encode($0.1) }.joined(separator: "&")
    return "<\(path)?\(encoded)>; rel=\"next\""
  }

  /// Percent-encodes a query name or value: only unreserved characters stay (RFC 3986 §2.3),
  /// so `&`, `=`, `+` and `>` in a cursor can't change the link's meaning.
  static func encode(_ text: String) -> String {
    let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
  }
}
