import Hummingbird
import NIOCore

/// The responder's HTTP policies around the RPC: CORS, security headers, `Cache-Control`,
/// `ETag`/`If-None-Match`/`If-Match` and `Link`. The decisions live in `CORSPolicy` and
/// `ConditionalRequests`; this only moves headers between them and the request/response.
extension GatewayResponder {
  /// Sent on every response. `nosniff` stops a browser from running a JSON body as script or
  /// HTML; `no-referrer` keeps API URLs (ids, cursors) out of other sites' logs.
  static let securityHeaders: [(FieldName, String)] = [
    (FieldName("X-Content-Type-Options")!, "nosniff"),
    (FieldName("Referrer-Policy")!, "no-referrer"),
  ]

  /// A CORS preflight's answer (204, or a 403 refusal thrown), or nil when the OPTIONS request
  /// is not a preflight (no `Origin` or `Access-Control-Request-Method`) and gets the usual 405.
  func preflight(_ request: Request, methods: [String], requestID: String) throws(APIError) -> Response? {
    guard request.method == .options, let origin = request.headers[.origin],
      let method = request.headers[.accessControlRequestMethod]
    else { return nil }
    switch self.cors.preflight(
      origin: origin, requestMethod: method, requestHeaders: request.headers[.accessControlRequestHeaders], methods: methods)
    {
    case .failure(let refusal):
      throw APIError.gateway(403, refusal.message)
    case .success(let fields):
      var headers: HTTPFields = [Self.requestIDHeader: requestID]
      for (name, value) in fields { if let field = FieldName(name) { headers[field] = value } }
      return Response(status: .noContent, headers: headers)
    }
  }

  /// `If-Match` on a write whose request has an `etag` field, as a binding of that field (it
  /// wins over the body's). `*` binds nothing: any current version will do.
  func ifMatchBinding(_ request: Request, route: Route) throws(APIError) -> [(field: String, value: String)] {
    guard let header = request.headers[.ifMatch], route.verb != "GET",
      self.routes.schema.field("etag", in: route.method.request.protoMessageName)?.type == .string
    else { return [] }
    switch ConditionalRequests.ifMatch(header) {
    case .any: return []
    case .etag(let etag): return [("etag", etag)]
    case nil: throw APIError.gateway(400, "If-Match takes \"*\" or one strong entity tag (\"<etag>\"), got \(header)")
    }
  }

  /// `ETag` and `Link` of a successful answer; a 304 (no body) when a read's `If-None-Match`
  /// matches the resource's current etag.
  func cachingHeaders(_ headers: inout HTTPFields, request: Request, route: Route, shaped: ResponseShaper.Shaped, query: [(String, String)])
    -> Response?
  {
    if let cacheControl = Self.publicCacheControl(request: request, route: route, shaped: shaped) {
      headers[.cacheControl] = cacheControl
      // A shared cache must not hand the anonymous answer to a caller that signs in (an
      // author's read of the same quiz carries more).
      headers[.vary] = "Authorization, X-API-Key, Cookie"
    }
    if let etag = shaped.etag, let tag = ConditionalRequests.entityTag(etag) {
      headers[.eTag] = tag
      if route.verb == "GET", let noneMatch = request.headers[.ifNoneMatch], ConditionalRequests.noneMatchMatches(noneMatch, etag: etag) {
        return Response(status: .notModified, headers: headers)
      }
    }
    if let cursor = shaped.meta.pagination?.nextCursor, !cursor.isEmpty {
      headers[Self.linkHeader] = ConditionalRequests.nextLink(path: request.uri.path, query: query, cursor: cursor)
    }
    return nil
  }

  static let linkHeader = FieldName("Link")!
  static let hstsHeader = FieldName("Strict-Transport-Security")!

  /// Reads whose published resource anyone may see, the same for every caller.
  static let publicReads: Set<String> = ["quiz.v1.QuizService/GetQuiz"]
  /// How long a shared cache may keep a public published quiz: short, since an author can still
  /// unpublish or edit it, and `ETag` revalidation is cheap after that.
  static let publicMaxAge = 30

  /// `public, max-age=30` for an anonymous read of a published quiz (no `Authorization`,
  /// `X-API-Key` or cookie: the answer is the one every caller gets), else nil: drafts, a
  /// caller's own reads and anything whose state the answer doesn't show (`fields` left it
  /// out) keep `no-store` or no caching header at all.
  static func publicCacheControl(request: Request, route: Route, shaped: ResponseShaper.Shaped) -> String? {
    guard route.verb == "GET", Self.publicReads.contains(route.method.fullName), shaped.state == "QUIZ_STATE_PUBLISHED",
      request.headers[.authorization] == nil, request.headers[Self.apiKeyHeader] == nil, request.headers[.cookie] == nil
    else { return nil }
    return "public, max-age=\(Self.publicMaxAge)"
  }

  /// Headers every response gets, whatever answered it: security headers, CORS for an allowed
  /// origin, and `Cache-Control: no-store` where a shared cache must not keep the answer — a
  /// caller's own data (it sent credentials) or an error (it may be gone next time).
  func addPolicyHeaders(to response: inout Response, for request: Request) {
    for (name, value) in Self.securityHeaders { response.headers[name] = value }
    if let hsts = self.strictTransportSecurity { response.headers[Self.hstsHeader] = hsts }
    let preflight = response.headers[.accessControlAllowMethods] != nil
    for (name, value) in self.cors.responseHeaders(origin: request.headers[.origin]) {
      guard let field = FieldName(name) else { continue }
      // A preflight's own headers are already there; it only gains `Vary`.
      if preflight && field != .vary { continue }
      // `Vary` adds to what the answer already varies on (a public quiz: its credentials).
      if field == .vary, let existing = response.headers[.vary] {
        response.headers[.vary] = existing + ", " + value
        continue
      }
      response.headers[field] = value
    }
    let credentials = request.headers[.authorization] != nil || request.headers[Self.apiKeyHeader] != nil
    if response.headers[.cacheControl] == nil, credentials || response.status.code >= 400 {
      response.headers[.cacheControl] = "no-store"
    }
  }
}
