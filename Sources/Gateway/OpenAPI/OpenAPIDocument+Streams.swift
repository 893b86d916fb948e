import QuizwireProtos

/// The streaming routes in the document, derived from `StreamRoute.all` as the unary ones are
/// from the route table: a server stream is a GET answering Server-Sent Events, or NDJSON for
/// `Accept: application/x-ndjson`; until its first message it can still fail with the usual
/// JSON envelope (an unknown quiz is a 404).
extension OpenAPIDocument {
  /// `path → ["get": operation]` for every stream route, named as `DocumentedPaths` names them.
  static func streamOperations(schemas: inout ProtoJSONSchemas) throws -> [String: [String: Any]] {
    var paths: [String: [String: Any]] = [:]
    for route in StreamRoute.all {
      let fullName = route.descriptor.fullyQualifiedMethod
      guard let method = MethodCatalogue.methods.first(where: { $0.fullName == fullName }) else {
        throw ProtoJSONSchemas.BuildError.unknownType(fullName)
      }
      let message = try schemas.reference(method.response.protoMessageName)
      var parameters: [[String: Any]] = route.template.variables.map { variable in
        ["name": variable.replacingOccurrences(of: ".", with: "_"), "in": "path", "required": true, "schema": ["type": "string"]]
      }
      parameters.append([
        "name": "top", "in": "query", "required": false, "description": "entries per snapshot (default 10)",
        "schema": ["type": "integer", "minimum": 1, "maximum": StreamRoute.maxTop],
      ])
      parameters.append([
        "name": "Last-Event-ID", "in": "header", "required": false, "schema": ["type": "string", "pattern": "^[0-9]+$"],
        "description": "resume after this event id (the version last seen): only newer snapshots are sent",
      ])
      var headers = self.commonResponseHeaders
      headers.removeValue(forKey: "Cache-Control")
      let events =
        "one `id: <version>` / `event: snapshot` / `data: <\(method.response.protoMessageName) JSON>` event per change, "
        + "`: ping` comments while idle, and a last `event: end` (data {}) or `event: error` (data: the envelope's error object)"
      var responses: [String: Any] = [
        "200": [
          "description": "the stream, opened once the first snapshot is there",
          "headers": headers,
          "content": [
            // One schema per event (what SSE clients such as schemathesis check each event against).
            "text/event-stream": [
              "schema": [
                "type": "object", "description": events, "required": ["data"],
                "properties": [
                  "id": ["type": "string", "pattern": "^[0-9]+$"], "event": ["type": "string", "enum": ["snapshot", "end", "error"]],
                  "data": [
                    "type": "string", "contentMediaType": "application/json", "contentSchema": ["anyOf": [message, ["$ref": "#/components/schemas/Error"]]],
                  ],
                ],
              ]
            ],
            "application/x-ndjson": [
              "schema": [
                "type": "string",
                "description": "one \(method.response.protoMessageName) JSON object per line; a last line {\"error\": …} if the stream failed",
              ],
              "x-item-schema": message,
            ],
          ],
        ]
      ]
      for status in self.errorStatuses(hasBody: false) { responses[String(status)] = ["$ref": "#/components/responses/Error\(status)"] }
      responses["431"] = ["$ref": "#/components/responses/Error431"]
      let path =
        "/"
        + route.template.segments.map { segment -> String in
          switch segment {
          case .literal(let text): text
          case .variable(let name): "{" + name.replacingOccurrences(of: ".", with: "_") + "}"
          }
        }.joined(separator: "/")
      paths[path] = [
        "get": [
          "operationId": method.method, "summary": fullName + " (server stream as SSE / NDJSON)", "tags": [method.service],
          "parameters": parameters, "responses": responses,
        ]
      ]
    }
    return paths
  }
}
