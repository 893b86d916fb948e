import Foundation

/// The gateway's CORS decisions, kept free of HTTP types so they are tested without sockets.
///
/// Only origins on an explicit allow-list get cross-origin access; the origin is echoed, never
/// `*`, so a response is never readable by a page the operator didn't name. An empty list (the
/// default) means no cross-origin access at all. No `Access-Control-Allow-Credentials`: the
/// API authenticates with headers a page sets itself (Authorization, X-API-Key), not cookies,
/// so letting browsers attach ambient credentials would only widen what a listed page can do.
public struct CORSPolicy: Sendable, Hashable {
  /// Request headers a page may send: the API's own, plus traceparent/tracestate because the
  /// gateway continues the caller's trace.
  public static let allowedHeaders = [
    "Authorization", "Content-Type", "X-API-Key", "X-Request-Id", "If-Match", "If-None-Match", "Idempotency-Key", "traceparent",
    "tracestate",
  ]
  /// Response headers a page may read besides the CORS-safelisted ones.
  /// The quota headers too: a browser app can only back off from what it is allowed to read;
  /// and `Idempotent-Replayed`, so a page can tell a retried create's kept answer.
  public static let exposedHeaders = [
    "X-Request-Id", "ETag", "Location", "Link", "Retry-After", "RateLimit-Policy", "RateLimit", "X-RateLimit-Limit",
    "X-RateLimit-Remaining", "X-RateLimit-Reset", "Idempotent-Replayed",
  ]
  /// How long a browser may cache a preflight (seconds): routes change only with a deploy.
  public static let maxAge = 600

  /// A preflight the gateway answers 403 for, and why (the envelope's message).
  public struct Refusal: Error, Sendable, Hashable {
    public var message: String
  }

  /// Origins as `scheme://host[:port]`, lowercased.
  public let origins: Set<String>

  /// `origins` must already be valid (`parse` checks a setting).
  public init(origins: some Sequence<String>) {
    self.origins = Set(origins.map { $0.lowercased() })
  }

  /// Reads `cors-origins`: comma-separated `scheme://host[:port]`. `*`, paths and `null` are
  /// refused: the list is explicit, and an opaque (`null`) origin can be forged by any page.
  public static func parse(_ text: String) throws(Refusal) -> [String] {
    var result: [String] = []
    for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
      let origin = item.hasSuffix("/") ? String(item.dropLast()) : item
      guard let schemeEnd = origin.range(of: "://"), ["http", "https"].contains(origin[..<schemeEnd.lowerBound].lowercased()) else {
        throw Refusal(message: "\(item) is not an origin (scheme://host[:port], http or https)")
      }
      let authority = origin[schemeEnd.upperBound...]
      guard !authority.isEmpty, !authority.contains(where: { "/?#@* ".contains($0) }) else {
        throw Refusal(message: "\(item) is not an origin (scheme://host[:port], no path, no wildcard)")
      }
      result.append(origin.lowercased())
    }
    return result
  }

  public func allows(_ origin: String?) -> Bool {
    guard let origin, !self.origins.isEmpty else { return false }
    return self.origins.contains(origin.lowercased())
  }

  /// The headers of a preflight's 204, or why it is refused. `methods` are the verbs the route
  /// table has for the path (never more than the path really takes).
  public func preflight(origin: String, requestMethod: String, requestHeaders: String?, methods: [String]) -> Result<
    [(name: String, value: String)], Refusal
  > {
    guard self.allows(origin) else { return .failure(Refusal(message: "origin \(origin) may not call this API from a browser")) }
    guard methods.contains(requestMethod) else {
      return .failure(Refusal(message: "\(requestMethod) is not allowed here; allowed: \(methods.joined(separator: ", "))"))
    }
    let allowed = Set(Self.allowedHeaders.map { $0.lowercased() })
    let asked = (requestHeaders ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
    if let refused = asked.first(where: { !allowed.contains($0) }) {
      return .failure(Refusal(message: "request header \(refused) is not allowed; allowed: \(Self.allowedHeaders.joined(separator: ", "))"))
    }
    return .success([
      ("Access-Control-Allow-Origin", origin),
      ("Access-Control-Allow-Methods", methods.joined(separator: ", ")),
      ("Access-Control-Allow-Headers", Self.allowedHeaders.joined(separator: ", ")),
      ("Access-Control-Max-Age", "\(Self.maxAge)"),
    ])
  }

  /// CORS headers of an actual (non-preflight) response. `Vary: Origin` whenever there is an
  /// allow-list, on every response: the answer depends on the origin, so a shared cache must
  /// not hand one origin's response to another.
  public func responseHeaders(origin: String?) -> [(name: String, value: String)] {
    guard !self.origins.isEmpty else { return [] }
    guard let origin, self.allows(origin) else { return [("Vary", "Origin")] }
    return [
      ("Vary", "Origin"),
      ("Access-Control-Allow-Origin", origin),
      ("Access-Control-Expose-Headers", Self.exposedHeaders.joined(separator: ", ")),
    ]
  }
}
