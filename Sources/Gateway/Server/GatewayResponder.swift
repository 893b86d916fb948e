import Foundation
import GRPCCore
import Hummingbird
import Logging
import NIOCore
import ServiceKit
import SwiftProtobuf
import Tracing

/// Answers every HTTP request of the API: finds the route in the table, binds the request
/// message, calls the service and writes the envelope. Refusals (no route, wrong verb, body
/// too large or not JSON, invalid fields) are answered before any RPC, in the same envelope.
struct GatewayResponder: HTTPResponder {
  typealias Context = GatewayRequestContext
  /// `HTTPField.Name` (Hummingbird exports `HTTPFields` but not `HTTPField`).
  typealias FieldName = HTTPFields.Element.Name

  let routes: RouteTable
  let upstreams: Upstreams
  let bodyLimit: Int
  let cors: CORSPolicy
  let tracer: W3CTracer
  let logger: Logger
  /// `/openapi.json` and `/docs`, built once at start.
  let openAPI: OpenAPIEndpoints
  /// Bearer tokens checked against auth's JWKS before they key a rate limit.
  let verifier: TokenVerifier
  /// nil when `rate-limit` is 0.
  let rateLimiter: GatewayRateLimiter?
  /// The server-streaming routes (SSE / NDJSON), outside the unary route table.
  let streams: StreamResponder
  /// Request header sizes beyond which the answer is 431.
  var headerLimits = HeaderLimits.default
  /// Idempotency records (`Idempotency-Key`); nil: the header is ignored.
  var store: GatewayStore? = nil
  /// `gateway_idempotency_requests_total{outcome}`; nil: not counted.
  var idempotencyMetrics: IdempotencyMetrics? = nil
  /// HTTP RED by route template and the access log; nil: neither.
  var observation: HTTPObservation? = nil
  /// `Strict-Transport-Security` on every answer when the port serves TLS (RFC 6797 says a
  /// browser ignores it over plain HTTP, so it is sent only over TLS); nil: plain HTTP.
  var strictTransportSecurity: String? = nil
  /// Renderings of read replies by their bytes; nil: every reply is rendered.
  var renderCache: RenderCache? = RenderCache()

  static let requestIDHeader = FieldName("X-Request-Id")!
  static let apiKeyHeader = FieldName("X-API-Key")!
  static let traceparentHeader = FieldName("traceparent")!

  func respond(to request: Request, context: Context) async throws -> Response {
    // An event stream's connection task keeps the slabs of the deepest async frames it ever
    // ran for as long as the stream stays open (the task allocator reuses them, it never
    // frees them): admission, token verification and opening the upstream call would cost
    // every open stream ~6 KB more. So a stream's setup runs in a task of its own, which
    // ends (and frees its frames) once the stream is open; only the body's writer stays.
    if StreamRoute.isStream(path: request.uri.path) {
      let setup = Task { try await self.answer(request, context: context) }
      return try await withTaskCancellationHandler {
        try await setup.value
      } onCancel: {
        setup.cancel()
      }
    }
    return try await self.answer(request, context: context)
  }

  /// `respond`, on whichever task runs it.
  private func answer(_ request: Request, context: Context) async throws -> Response {
    let start = ContinuousClock.now
    // The caller's id when it is sane (the same rule as the services'), else a new one.
    let requestID = RequestIDInterceptor.accept(request.headers[Self.requestIDHeader]) ?? RequestIDInterceptor.makeID()
    var request = request
    var response: Response
    var admission = Admission.none
    var routeLabel = "unmatched"
    do {
      // First: an oversized header section is refused before it keys a rate limit or is verified.
      if let refusal = self.headerLimits.refusal(for: request.headers) { throw refusal }
      admission = try await self.admit(request, context: context)
      response = try await self.handle(&request, requestID: requestID, admission: admission, route: &routeLabel)
    } catch {
      response = self.errorResponse(for: error, request: request, requestID: requestID)
    }
    if admission.presentedAPIKey, response.status == .unauthorized, let address = admission.clientAddress {
      self.rateLimiter?.chargeKeyRefusal(address)
    }
    self.addPolicyHeaders(to: &response, for: request)
    Self.addQuotaHeaders(admission, to: &response)
    self.observation?.record(
      .init(
        method: request.method.rawValue, route: routeLabel, status: Int(response.status.code), start: start, requestID: requestID,
        traceID: HTTPObservation.traceID(request.headers[Self.traceparentHeader])))
    return response
  }

  /// Any error as its envelope: the gateway's own refusals as they are, upstream errors through
  /// the status table, anything else a 500 that names nothing internal (the log has it).
  func errorResponse(for error: any Error, request: Request, requestID: String) -> Response {
    switch error {
    case let error as APIError:
      return Self.errorResponse(error, requestID: requestID)
    case let error as RPCError:
      return Self.errorResponse(.from(error, ifMatchSent: request.headers[.ifMatch] != nil), requestID: requestID)
    default:
      self.logger.error("gateway request failed", metadata: ["request_id": "\(requestID)", "error": "\(error)"])
      return Self.errorResponse(.from(RPCError(code: .internalError, message: "\(error)")), requestID: requestID)
    }
  }

  /// Kept small on purpose: a connection's task keeps the memory of its deepest async frames
  /// for as long as the connection lives (the task allocator reuses its slabs, it doesn't
  /// return them), so an event stream must not pay for the unary path's frame.
  private func handle(_ request: inout Request, requestID: String, admission: Admission, route: inout String) async throws -> Response {
    if let served = self.openAPI.response(verb: request.method.rawValue, path: request.uri.path, requestID: requestID) {
      route = request.uri.path
      return served
    }
    if let streamed = try await self.streams.response(to: request, requestID: requestID, forwardedFor: admission.clientAddress) {
      route = StreamRoute.match(path: request.uri.path)?.0.template.description ?? request.uri.path
      return streamed
    }
    return try await self.unary(&request, requestID: requestID, admission: admission, label: &route)
  }

  /// A route of the table: bind, call, answer.
  private func unary(_ request: inout Request, requestID: String, admission: Admission, label: inout String) async throws -> Response {
    let forwardedFor = admission.clientAddress
    let route: Route
    let bindings: [(field: String, value: String)]
    switch self.routes.match(verb: request.method.rawValue, path: request.uri.path) {
    case .notFound:
      throw APIError.gateway(404, "no route for \(request.method.rawValue) \(request.uri.path)")
    case .methodNotAllowed(let allow):
      if let preflight = try self.preflight(request, methods: allow, requestID: requestID) { return preflight }
      var error = APIError.gateway(405, "\(request.method.rawValue) is not allowed on \(request.uri.path); allowed: \(allow.joined(separator: ", "))")
      error.headers["Allow"] = allow.joined(separator: ", ")
      throw error
    case .route(let found, let bound):
      (route, bindings) = (found, bound)
    }
    label = route.template.description
    let body = try await self.readBody(&request, route: route)
    let query = request.uri.queryParameters.map { (String($0.key), String($0.value)) }
    let binder = RequestBinder(schema: self.routes.schema)
    let message = try binder.bind(route.method.request, route: route, body: body, bindings: bindings + self.ifMatchBinding(request, route: route), query: query)
    // A creating POST with `Idempotency-Key` runs at most once per key (after binding: a
    // request refused as malformed claims nothing).
    if let record = try self.idempotencyRecord(request, route: route, verifiedUser: admission.verifiedUser) {
      let fingerprint = IdempotencyPolicy.fingerprint(body: body, query: request.uri.query ?? "")
      let current = request
      return try await self.idempotently(record, fingerprint: fingerprint, request: current, requestID: requestID) {
        try await self.call(route, message: message, request: current, query: query, requestID: requestID, forwardedFor: forwardedFor)
      }
    }
    return try await self.call(route, message: message, request: request, query: query, requestID: requestID, forwardedFor: forwardedFor)
  }

  /// What every upstream call carries: the request id, the caller's credentials as they came
  /// (the services decide what they allow) and the client's address.
  static func callMetadata(_ headers: HTTPFields, requestID: String, forwardedFor: String?) -> Metadata {
    var metadata: Metadata = [RequestIDInterceptor.key: .string(requestID)]
    if let authorization = headers[.authorization] { metadata.addString(authorization, forKey: "authorization") }
    if let apiKey = headers[Self.apiKeyHeader] { metadata.addString(apiKey, forKey: "x-api-key") }
    if let forwardedFor { metadata.addString(forwardedFor, forKey: "x-forwarded-for") }
    return metadata
  }

  /// The unary call of `route` and its answer in the envelope (`Location`, `ETag`, paging).
  private func call(
    _ route: Route, message: any SwiftProtobuf.Message, request: Request, query: [(String, String)], requestID: String, forwardedFor: String?
  ) async throws -> Response {
    let metadata = Self.callMetadata(request.headers, requestID: requestID, forwardedFor: forwardedFor)
    // The caller's trace continues: the client interceptor starts its span under it and
    // sends the new traceparent on.
    var serviceContext = ServiceContext.topLevel
    self.tracer.extract(request.headers, into: &serviceContext, using: HTTPFieldsExtractor())
    let reply = try await ServiceContext.withValue(serviceContext) {
      try await self.upstreams.call(route, request: message, metadata: metadata)
    }

    var headers: HTTPFields = [Self.requestIDHeader: requestID]
    if route.successStatus == 204 { return Response(status: .noContent, headers: headers) }
    let limit = query.first { $0.0 == "limit" }.flatMap { Int($0.1) }
    let shaped = try self.render(reply, of: route, requestedLimit: limit)
    if let notModified = self.cachingHeaders(&headers, request: request, route: route, shaped: shaped, query: query) { return notModified }
    if route.successStatus == 201, let id = shaped.id, let location = route.location,
      let path = location.expand([location.variables[0]: id])
    {
      headers[.location] = path
    }
    headers[.contentType] = "application/json"
    let data = Envelope.data(shaped.json, requestID: requestID, meta: shaped.meta)
    return Response(status: .init(code: route.successStatus), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }

  /// `reply` (the route's response message, serialized) as the envelope's data and meta: kept
  /// from an earlier read that got the same bytes, else decoded and rendered (and kept, for
  /// reads). Writes are never kept: their answers can carry secrets nobody reads twice.
  private func render(_ reply: [UInt8], of route: Route, requestedLimit: Int?) throws -> ResponseShaper.Shaped {
    let key =
      route.verb == "GET" && self.renderCache != nil
      ? RenderCache.Key(type: route.method.response.protoMessageName, limit: requestedLimit, reply: reply) : nil
    if let key, let kept = self.renderCache?.value(for: key) { return kept }
    let message = try route.method.response.init(serializedBytes: reply)
    let shaped = try ResponseShaper(schema: self.routes.schema).shape(message, requestedLimit: requestedLimit)
    if let key { self.renderCache?.store(shaped, for: key) }
    return shaped
  }

  /// The body of a route that takes one: at most `bodyLimit` bytes (413), JSON only (415).
  private func readBody(_ request: inout Request, route: Route) async throws -> Data {
    guard route.body != .none else { return Data() }
    if let length = request.headers[.contentLength].flatMap(Int.init), length > self.bodyLimit {
      throw APIError.gateway(413, "the request body is larger than \(self.bodyLimit) bytes")
    }
    let buffer: ByteBuffer
    do { buffer = try await request.collectBody(upTo: self.bodyLimit) } catch let error as HTTPError where error.status == .contentTooLarge {
      throw APIError.gateway(413, "the request body is larger than \(self.bodyLimit) bytes")
    } catch is NIOTooManyBytesError {
      // A chunked body (no Content-Length) outgrowing the limit while it streams: a 500 before.
      throw APIError.gateway(413, "the request body is larger than \(self.bodyLimit) bytes")
    }
    guard buffer.readableBytes > 0 else { return Data() }
    let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
    guard type == "application/json" else {
      throw APIError.gateway(415, "the request body must be application/json (got \(type ?? "no Content-Type"))")
    }
    return Data(buffer.readableBytesView)
  }

  /// An error in the envelope, with the headers its status row asks for.
  static func errorResponse(_ error: APIError, requestID: String) -> Response {
    var headers: HTTPFields = [requestIDHeader: requestID, .contentType: "application/json"]
    for (name, value) in error.headers.sorted(by: { $0.key < $1.key }) {
      if let field = FieldName(name) { headers[field] = value }
    }
    let data = Envelope.error(error, requestID: requestID)
    return Response(status: .init(code: error.httpStatus), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }
}

/// Reads `traceparent`/`tracestate` from the HTTP request for the tracer.
struct HTTPFieldsExtractor: Extractor {
  typealias Carrier = HTTPFields
  func extract(key: String, from carrier: HTTPFields) -> String? {
    GatewayResponder.FieldName(key).flatMap { carrier[$0] }
  }
}
