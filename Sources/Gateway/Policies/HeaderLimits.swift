import Hummingbird

/// How large a request's header section may be before the gateway refuses it with 431
/// (RFC 6585) in the usual envelope. NIOHTTP1's parser (llhttp) only stops at 80 KiB, and then
/// answers a bare 400 with no body and no `X-Request-Id`; well below that, these limits keep
/// oversized cookies or tokens from reaching the rate limiter, the token verifier and the
/// services' metadata (which have their own, smaller, header limits).
public struct HeaderLimits: Sendable, Hashable {
  /// All fields together, counted as `name: value\r\n` (default 16 KiB).
  public var total: Int
  /// One field's name and value (default 8 KiB).
  public var field: Int

  public static let `default` = HeaderLimits(total: 16 * 1024, field: 8 * 1024)

  public init(total: Int, field: Int) {
    self.total = total
    self.field = field
  }

  /// The 431 refusal when `fields` exceed a limit, else nil. The message names the field but
  /// never echoes a value (it may be a token or a cookie).
  func refusal(for fields: HTTPFields) -> APIError? {
    var total = 0
    for field in fields {
      let name = field.name.rawName
      let size = name.utf8.count + field.value.utf8.count
      if size > self.field {
        let shown = name.count > 64 ? String(name.prefix(64)) + "…" : name
        return APIError.gateway(431, "the request header field \(shown) is larger than \(self.field) bytes")
      }
      total += size + 4
    }
    guard total > self.total else { return nil }
    return APIError.gateway(431, "the request headers are larger than \(self.total) bytes in all")
  }
}
