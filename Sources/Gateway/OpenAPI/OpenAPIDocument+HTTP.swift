/// The HTTP layer of the document, around what the route table says: every response header
/// the gateway sends (request id, caching, paging, rate limits, security headers), the
/// conditional request headers and `Idempotency-Key` (where `IdempotencyPolicy` honours it),
/// and the answers the gateway's own policies add — 304, 405, 412, 413/415 where a body is
/// read, 429 with its quota headers, 431 for oversized headers.
/// The rules mirror the responder's (`GatewayResponder+Policies`, `RateLimitPolicy`,
/// `HeaderLimits`): where a header is sent is decided from the same route facts.
extension OpenAPIDocument {
  /// `#/components/headers`: one definition per header, referenced wherever it is sent.
  static var headerComponents: [String: Any] {
    func header(_ description: String, _ schema: [String: Any] = ["type": "string"]) -> [String: Any] {
      ["description": description, "schema": schema]
    }
    return [
      "X-Request-Id": header("the request's id (the caller's when it sent a sane one); equals meta.request_id"),
      "ETag": header("the resource's entity tag (strong), for If-None-Match and If-Match"),
      "Location": header("the created resource's path"),
      "Link": header("the next page: <path?cursor=…>; rel=\"next\" (absent on the last page)"),
      "Cache-Control": header(
        "no-store on errors and on answers to callers that sent credentials; public, max-age=\(GatewayResponder.publicMaxAge) on "
          + "an anonymous read of a published quiz"),
      "Vary": header("the request headers the answer depends on (Origin with CORS; credentials on a public quiz)"),
      "RateLimit-Policy": header("the caller's quota (IETF httpapi-ratelimit-headers): \"<policy>\";q=<requests>;w=<seconds>"),
      "RateLimit": header("what is left of the quota: \"<policy>\";r=<remaining>;t=<seconds until full>"),
      "X-RateLimit-Limit": header("requests per window", ["type": "integer", "minimum": 0]),
      "X-RateLimit-Remaining": header("requests left in this window", ["type": "integer", "minimum": 0]),
      "X-RateLimit-Reset": header("seconds until the quota is full again", ["type": "integer", "minimum": 0]),
      "Retry-After": header("seconds to wait before retrying", ["type": "integer", "minimum": 1]),
      "Allow": header("the methods the path takes (on 405)"),
      "WWW-Authenticate": header("the Bearer challenge (RFC 6750)"),
      "X-Content-Type-Options": header("always nosniff", ["type": "string", "enum": ["nosniff"]]),
      "Referrer-Policy": header("always no-referrer", ["type": "string", "enum": ["no-referrer"]]),
      "Strict-Transport-Security": header("max-age=<seconds>, on every answer when the gateway serves HTTPS (tls-cert)"),
      "Idempotent-Replayed": header(
        "true when this is the kept answer of an earlier request with the same Idempotency-Key (body byte for byte, meta included)",
        ["type": "string", "enum": ["true"]]),
    ]
  }

  /// `#/components/parameters`: the conditional request headers and `Idempotency-Key`.
  static var parameterComponents: [String: Any] {
    [
      "Idempotency-Key": [
        "name": "Idempotency-Key", "in": "header", "required": false,
        // The bare form; an RFC 8941 string ("…") is taken too.
        "schema": ["type": "string", "minLength": 1, "maxLength": IdempotencyPolicy.maxKeyLength, "pattern": "^[!#-~][!-~]*$"],
        "description":
          "makes this create safe to retry for 24 h: the same key and body replay the first answer (Idempotent-Replayed: true); "
          + "another body is 422 IDEMPOTENCY_KEY_MISMATCH, a retry while the first runs 409 IDEMPOTENCY_KEY_IN_FLIGHT; "
          + "keys are per caller (a bearer token or an API key is required)",
      ],
      "If-None-Match": [
        "name": "If-None-Match", "in": "header", "required": false, "schema": ["type": "string"],
        "description": "an ETag from an earlier read (or *): 304 without a body when the resource hasn't changed",
      ],
      "If-Match": [
        "name": "If-Match", "in": "header", "required": false, "schema": ["type": "string"],
        "description": "\"*\" or the ETag the change is based on: 412 when the resource has changed since",
      ],
    ]
  }

  /// Headers every answer may carry, besides its own: the request id, the security headers,
  /// `Cache-Control`/`Vary` and, while rate limits are on, the caller's quota.
  static var commonResponseHeaders: [String: Any] {
    var headers: [String: Any] = [:]
    for name in [
      "X-Request-Id", "Cache-Control", "Vary", "X-Content-Type-Options", "Referrer-Policy", "Strict-Transport-Security",
      "RateLimit-Policy", "RateLimit",
      "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
    ] {
      headers[name] = ["$ref": "#/components/headers/\(name)"]
    }
    return headers
  }

  /// Whether `route`'s request takes its `etag` from `If-Match` (`ifMatchBinding`'s rule).
  static func takesIfMatch(_ route: Route, schema: MessageSchema) -> Bool {
    route.verb != "GET" && schema.field("etag", in: route.method.request.protoMessageName)?.type == .string
  }

  /// Whether `route`'s answer is a resource with an `etag` (so `ETag`, and 304 on a read).
  static func answersETag(_ route: Route, schema: MessageSchema) -> Bool {
    route.successStatus != 204 && schema.field("etag", in: route.method.response.protoMessageName)?.type == .string
  }

  /// Adds the HTTP layer to one operation built from the route table.
  static func addHTTPPolicies(to operation: inout [String: Any], route: Route, schema: MessageSchema) {
    var parameters = operation["parameters"] as? [[String: Any]] ?? []
    var responses = operation["responses"] as? [String: Any] ?? [:]
    let etag = self.answersETag(route, schema: schema)
    if route.verb == "GET", etag { parameters.append(["$ref": "#/components/parameters/If-None-Match"]) }
    let idempotent = IdempotencyPolicy.applies(to: route)
    if idempotent { parameters.append(["$ref": "#/components/parameters/Idempotency-Key"]) }
    if self.takesIfMatch(route, schema: schema) {
      parameters.append(["$ref": "#/components/parameters/If-Match"])
      responses["412"] = ["$ref": "#/components/responses/Error412"]
    }
    let success = String(route.successStatus)
    if var answer = responses[success] as? [String: Any] {
      var headers = self.commonResponseHeaders
      for (name, value) in answer["headers"] as? [String: Any] ?? [:] { headers[name] = value }
      if etag { headers["ETag"] = ["$ref": "#/components/headers/ETag"] }
      if route.successStatus == 201, route.location != nil { headers["Location"] = ["$ref": "#/components/headers/Location"] }
      if idempotent { headers["Idempotent-Replayed"] = ["$ref": "#/components/headers/Idempotent-Replayed"] }
      if schema.field("next_page_token", in: route.method.response.protoMessageName) != nil {
        headers["Link"] = ["$ref": "#/components/headers/Link"]
      }
      answer["headers"] = headers
      responses[success] = answer
    }
    if route.verb == "GET", etag { responses["304"] = ["$ref": "#/components/responses/NotModified"] }
    responses["431"] = ["$ref": "#/components/responses/Error431"]
    operation["parameters"] = parameters
    operation["responses"] = responses
  }

  /// The shared answers the policies add: 304, and the error envelope for 405 (with `Allow`),
  /// 412 and 431.
  static var policyResponses: [String: Any] {
    var notModifiedHeaders = self.commonResponseHeaders
    notModifiedHeaders["ETag"] = ["$ref": "#/components/headers/ETag"]
    var notAllowedHeaders = self.commonResponseHeaders
    notAllowedHeaders["Allow"] = ["$ref": "#/components/headers/Allow"]
    let error: (String, [String: Any]) -> [String: Any] = { description, headers in
      ["description": description, "headers": headers, "content": self.errorContent]
    }
    return [
      "NotModified": ["description": "the resource still has the ETag in If-None-Match (no body)", "headers": notModifiedHeaders],
      "Error405": error("error.status \(StatusTable.gatewayStatus(405)): the path takes other methods (Allow)", notAllowedHeaders),
      "Error412": error("error.status ABORTED: If-Match named an ETag the resource no longer has", self.commonResponseHeaders),
      "Error431": error("error.status \(StatusTable.gatewayStatus(431)): the request's headers are too large", self.commonResponseHeaders),
    ]
  }

  /// The headers of an error answer with `status`: the common ones, plus what its row asks for.
  static func errorHeaders(status: Int, rows: [StatusTable.Row]) -> [String: Any] {
    var headers = self.commonResponseHeaders
    if rows.contains(where: \.challenge) { headers["WWW-Authenticate"] = ["$ref": "#/components/headers/WWW-Authenticate"] }
    // 409 too: a request whose Idempotency-Key is still being answered is told when to retry.
    if rows.contains(where: \.retryAfter) || status == 409 { headers["Retry-After"] = ["$ref": "#/components/headers/Retry-After"] }
    return headers
  }
}
