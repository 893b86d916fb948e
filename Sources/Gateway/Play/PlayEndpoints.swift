import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ServiceKit
import Tracing

/// The Play WebSocket (`GET /api/v1/attempts/play`, upgraded) and its tickets
/// (`POST /api/v1/attempts/play-ticket`); paths in `PlayRoutes`.
///
/// Refusals after the handshake, not before it: a page sees nothing of a refused handshake
/// (the browser reports close code 1006 with no reason), so the socket is accepted and at
/// once closed with 1008 and the reason — auth (no or an invalid bearer token or ticket) and
/// origin alike. No RPC is made for a refused socket, so an attacker's page learns nothing
/// but the refusal.
struct PlayEndpoints: Sendable {
  let bridge: PlayBridge
  let tickets: PlayTickets
  let cors: CORSPolicy
  let verifier: TokenVerifier
  let tracer: W3CTracer
  let logger: Logger
  /// The routes' limiter: a handshake takes from the same bucket a request would (the user's
  /// once verified, else the client address's); nil when `rate-limit` is 0.
  var rateLimiter: GatewayRateLimiter? = nil

  /// How a handshake is answered: the socket bridged with these call metadata, or refused.
  enum Admission: Sendable {
    case play(Metadata)
    case refuse(PlayClose)
  }

  // MARK: The WebSocket

  /// The upgrade decision for any WebSocket handshake on the API port.
  func shouldUpgrade(_ head: HTTPRequest, channel: any Channel) async -> ShouldUpgradeResult<
    WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>
  > {
    let uri = URI(head.path ?? "")
    // Only the Play path upgrades; any other handshake is the library's plain 400.
    guard uri.path == PlayRoutes.socket else { return .dontUpgrade }
    let requestID = RequestIDInterceptor.accept(head.headerFields[GatewayResponder.requestIDHeader]) ?? RequestIDInterceptor.makeID()
    let admission = await self.admit(head, query: uri.queryParameters, requestID: requestID, peer: channel.remoteAddress?.ipAddress)
    var extracted = ServiceContext.topLevel
    self.tracer.extract(head.headerFields, into: &extracted, using: HTTPFieldsExtractor())
    let serviceContext = extracted
    let (bridge, logger) = (self.bridge, self.logger)
    return .upgrade([GatewayResponder.requestIDHeader: requestID]) { inbound, outbound, _ in
      let close: PlayClose?
      switch admission {
      case .refuse(let refusal):
        logger.notice("play socket refused", metadata: ["request_id": "\(requestID)", "reason": "\(refusal.reason)"])
        close = refusal
      case .play(let metadata):
        close = await ServiceContext.withValue(serviceContext) {
          await bridge.run(inbound: inbound, outbound: outbound, metadata: metadata)
        }
        logger.info(
          "play socket closed", metadata: ["request_id": "\(requestID)", "close_code": "\(close.map { "\($0.code)" } ?? "gone")"])
      }
      guard let close else { return }
      try await outbound.close(close.code, reason: close.truncatedReason)
    }
  }

  /// Origin, then credentials: a bearer header or a ticket (not both), verified here so an
  /// invalid one is 1008 before any RPC; then the caller's rate limit, 4008 (RESOURCE_EXHAUSTED)
  /// when it is spent — a client can't open sockets (each a Play call) faster than requests.
  /// A ticket is spent only once the socket is let through: one refused for the rate limit
  /// can be used again when the limit allows (within its 30 s).
  func admit(_ head: HTTPRequest, query: FlatDictionary<Substring, Substring>, requestID: String, peer: String?) async -> Admission {
    let (admission, user, ticket) = await self.credentials(head, query: query, requestID: requestID, peer: peer)
    if let limiter = self.rateLimiter {
      let decision = limiter.take(user.map(RateLimitPartition.user) ?? .address(peer ?? "unknown"))
      guard decision.allowed else {
        let message = "rate limit exceeded for this \(decision.policy == "ip" ? "client address" : decision.policy); retry after \(decision.reset) s"
        return .refuse(.rpc(RPCError(code: .resourceExhausted, message: message)))
      }
    }
    guard case .play = admission, let ticket else { return admission }
    // Single use: spent here, so a second socket with it (on any replica sharing the ledger) is refused.
    do throws(PlayTickets.Refusal) { _ = try await self.tickets.redeem(ticket) } catch { return .refuse(.policy(error.message)) }
    return admission
  }

  /// The admission by origin and credentials, the verified user (nil when refused) and the
  /// ticket to spend if the socket is let through (opened and checked here, not yet spent).
  private func credentials(
    _ head: HTTPRequest, query: FlatDictionary<Substring, Substring>, requestID: String, peer: String?
  ) async -> (Admission, String?, String?) {
    if let origin = head.headerFields[.origin], !self.cors.allows(origin) {
      return (.refuse(.policy("origin \(origin) may not open this socket (not in the gateway's cors-origins)")), nil, nil)
    }
    let header = head.headerFields[.authorization]
    let ticket = query["ticket"].map(String.init)
    let token: String
    switch (header, ticket) {
    case (.some, .some):
      return (.refuse(.policy("send a bearer token or a ticket, not both")), nil, nil)
    case (.none, .none):
      return (.refuse(.policy("sign in: send Authorization: Bearer <token>, or ?ticket= from POST \(PlayRoutes.ticket)")), nil, nil)
    case (.some(let header), .none):
      guard let bearer = GatewayResponder.bearerToken(header) else { return (.refuse(.policy("the Authorization header must be Bearer <token>")), nil, nil) }
      token = bearer
    case (.none, .some(let ticket)):
      do throws(PlayTickets.Refusal) { token = try self.tickets.open(ticket).bearerToken } catch { return (.refuse(.policy(error.message)), nil, nil) }
    }
    let claims: AccessTokenClaims
    do { claims = try await self.verifier.verify(token) } catch {
      if case .keysUnavailable = error { return (.refuse(.rpc(RPCError(code: .unavailable, message: "cannot verify the token now; retry"))), nil, nil) }
      return (.refuse(.policy("the bearer token is not valid: \(error)")), nil, nil)
    }
    var metadata: Metadata = [RequestIDInterceptor.key: .string(requestID)]
    metadata.addString("Bearer \(token)", forKey: "authorization")
    if let peer { metadata.addString(peer, forKey: "x-forwarded-for") }
    return (.play(metadata), claims.sub, ticket)
  }

  // MARK: Tickets and plain HTTP on the Play paths

  /// The answer for the Play paths over plain HTTP, or nil for any other path.
  func response(to request: Request, requestID: String) async throws -> Response? {
    switch request.uri.path {
    case PlayRoutes.socket:
      guard request.method == .get else { throw Self.methodNotAllowed(request, allow: "GET") }
      var error = APIError.gateway(426, "\(PlayRoutes.socket) is a WebSocket: open it with an Upgrade: websocket handshake")
      error.headers["Upgrade"] = "websocket"
      throw error
    case PlayRoutes.ticket:
      if request.method == .options, let preflight = try self.preflight(request, requestID: requestID) { return preflight }
      guard request.method == .post else { throw Self.methodNotAllowed(request, allow: "POST") }
      return try await self.issueTicket(request, requestID: requestID)
    default:
      return nil
    }
  }

  /// 201 `{"ticket", "expires_at"}` for a caller with a valid bearer token. The body may be
  /// empty or `{}`; anything else is 400, as for every strict body.
  private func issueTicket(_ request: Request, requestID: String) async throws -> Response {
    var request = request
    let body: ByteBuffer
    do {
      body = try await request.collectBody(upTo: 4096)
    } catch is NIOTooManyBytesError {
      // collectBody's own error would reach the responder as an unknown one: a 500.
      throw APIError.gateway(413, "a play ticket request takes no body (empty or {}), and at most 4096 bytes")
    } catch let error as HTTPError where error.status == .contentTooLarge {
      throw APIError.gateway(413, "a play ticket request takes no body (empty or {}), and at most 4096 bytes")
    }
    let text = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
    if !text.isEmpty {
      let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
      guard type == "application/json" else { throw APIError.gateway(415, "the request body must be application/json (or empty)") }
      guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
        throw APIError.gateway(400, "the request body is not a JSON object", violations: [.init(field: "", description: "malformed JSON")])
      }
      if let name = object.keys.sorted().first {
        throw APIError.gateway(
          400, "invalid request: \(name): unknown field (this request takes no fields)", violations: [.init(field: name, description: "unknown field")])
      }
    }
    guard let token = GatewayResponder.bearerToken(request.headers[.authorization]) else {
      var error = APIError.from(RPCError(code: .unauthenticated, message: "a play ticket needs a bearer token (Authorization: Bearer <token>)"))
      error.headers["WWW-Authenticate"] = #"Bearer realm="quizwire""#
      throw error
    }
    do { _ = try await self.verifier.verify(token) } catch { throw GatewayResponder.tokenRefusal(error) }
    let (ticket, expiresAt) = try self.tickets.issue(bearerToken: token)
    let json = Envelope.serialize(["ticket": ticket, "expires_at": Envelope.timestamp(expiresAt)])
    let data = Envelope.data(json, requestID: requestID)
    return Response(
      status: .created, headers: [GatewayResponder.requestIDHeader: requestID, .contentType: "application/json"],
      body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }

  /// The route table doesn't know these paths, so their preflight is answered here.
  private func preflight(_ request: Request, requestID: String) throws(APIError) -> Response? {
    guard let origin = request.headers[.origin], let method = request.headers[.accessControlRequestMethod] else { return nil }
    switch self.cors.preflight(origin: origin, requestMethod: method, requestHeaders: request.headers[.accessControlRequestHeaders], methods: ["POST"]) {
    case .failure(let refusal): throw APIError.gateway(403, refusal.message)
    case .success(let fields):
      var headers: HTTPFields = [GatewayResponder.requestIDHeader: requestID]
      for (name, value) in fields { if let field = GatewayResponder.FieldName(name) { headers[field] = value } }
      return Response(status: .noContent, headers: headers)
    }
  }

  private static func methodNotAllowed(_ request: Request, allow: String) -> APIError {
    var error = APIError.gateway(405, "\(request.method.rawValue) is not allowed on \(request.uri.path); allowed: \(allow)")
    error.headers["Allow"] = allow
    return error
  }
}
