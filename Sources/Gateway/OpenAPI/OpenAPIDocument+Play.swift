import QuizwireProtos

/// The Play WebSocket and its tickets in the document (`PlayRoutes`, `PlayEndpoints`). OpenAPI
/// has no words for a socket's messages, so the handshake is a GET answering 101, and the frames
/// are named in `x-websocket-messages` (canonical JSON of the Play RPC's request and event).
extension OpenAPIDocument {
  /// The bidi RPC the socket bridges.
  static let playMethod = "scoring.v1.ScoringService/Play"

  static func playOperations(schemas: inout ProtoJSONSchemas) throws -> [String: [String: Any]] {
    guard let method = MethodCatalogue.methods.first(where: { $0.fullName == self.playMethod }) else {
      throw ProtoJSONSchemas.BuildError.unknownType(self.playMethod)
    }
    let inbound = try schemas.reference(method.request.protoMessageName)
    let outbound = try schemas.reference(method.response.protoMessageName)
    let error: (Int) -> [String: Any] = { ["$ref": "#/components/responses/Error\($0)"] }
    var upgradeRequired = self.commonResponseHeaders
    upgradeRequired["Upgrade"] = ["description": "websocket", "schema": ["type": "string", "enum": ["websocket"]]]
    let socket: [String: Any] = [
      "operationId": "PlaySocket", "tags": [method.service],
      "summary": self.playMethod + " as a WebSocket",
      "description":
        "Upgrade with a WebSocket handshake, authenticated by Authorization: Bearer or ?ticket= (from POST "
        + "\(PlayRoutes.ticket); browsers can't set headers on a socket); the Origin must be in the gateway's cors-origins. "
        + "Each text frame is one PlayRequest, each frame back one PlayEvent, in canonical JSON. Close codes: 1000 with the "
        + "final result, 1008 for auth or origin refusals, 1003 for a binary frame, 4003 for a frame that is no PlayRequest, "
        + "1011 internal, 4000 + the gRPC code when the RPC ended in error (reason: its message), 4008 when the caller's rate "
        + "limit is spent (no RPC made).",
      "parameters": [
        [
          "name": "ticket", "in": "query", "required": false, "schema": ["type": "string"],
          "description": "a single-use ticket valid for 30 s, instead of the Authorization header",
        ]
      ],
      "x-websocket-messages": ["client": inbound, "server": outbound],
      "responses": [
        "101": ["description": "switched to the WebSocket protocol"],
        "405": error(405), "426": ["description": "not a WebSocket handshake", "headers": upgradeRequired, "content": self.errorContent],
        "429": error(429), "431": error(431),
      ],
    ]
    var created = self.commonResponseHeaders
    created.removeValue(forKey: "Cache-Control")
    let ticketData: [String: Any] = [
      "type": "object", "required": ["ticket", "expires_at"], "additionalProperties": false,
      "properties": ["ticket": ["type": "string"], "expires_at": ["type": "string", "format": "date-time"]],
    ]
    let ticket: [String: Any] = [
      "operationId": "CreatePlayTicket", "tags": [method.service],
      "summary": "a single-use ticket for the Play socket (30 s), for a caller with a bearer token",
      "security": [["bearerAuth": [String]()]],
      "requestBody": [
        "required": false,
        "content": ["application/json": ["schema": ["type": "object", "maxProperties": 0, "description": "empty, or {}"]]],
      ],
      "responses": [
        "201": [
          "description": "the ticket",
          "headers": created,
          "content": [
            "application/json": [
              "schema": [
                "type": "object", "required": ["data", "meta"], "additionalProperties": false,
                "properties": ["data": ticketData, "meta": ["$ref": "#/components/schemas/Meta"]],
              ]
            ]
          ],
        ],
        "400": error(400), "401": error(401), "405": error(405), "413": error(413), "415": error(415), "429": error(429),
        "431": error(431), "503": error(503),
      ],
    ]
    return [PlayRoutes.socket: ["get": socket], PlayRoutes.ticket: ["post": ticket]]
  }

  /// The error envelope as a response body.
  static var errorContent: [String: Any] {
    ["application/json": ["schema": ["$ref": "#/components/schemas/ErrorEnvelope"]]]
  }
}
