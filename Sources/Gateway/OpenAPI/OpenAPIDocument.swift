import Foundation
import GRPCCore

/// The OpenAPI 3.1 document of the API, derived from the one route table (docs/services.md,
/// "Gateway"): every route with its path and query parameters as the binder reads them, its
/// body and answer as canonical protobuf JSON inside the envelope, its success status, and the
/// error envelope for every status the status table can produce. Nothing here lists a route:
/// a route added to the protos appears in the document by itself.
public enum OpenAPIDocument {
  /// The document as JSON (keys sorted, so it is stable from one start to the next).
  public static func build(routes: RouteTable, descriptorSet: Data) throws -> Data {
    var schemas = try ProtoJSONSchemas(schema: routes.schema, descriptorSet: descriptorSet)
    var paths: [String: [String: Any]] = [:]
    var operationIDs: Set<String> = []
    let documented = DocumentedPaths(routes.routes)
    for route in routes.routes {
      var operationID = route.method.method
      // Additional bindings share a method; operation ids must still be unique.
      var suffix = 2
      while operationIDs.contains(operationID) {
        operationID = route.method.method + String(suffix)
        suffix += 1
      }
      operationIDs.insert(operationID)
      var operation = try self.operation(route, names: documented.names(for: route), schemas: &schemas)
      self.addHTTPPolicies(to: &operation, route: route, schema: routes.schema)
      operation["operationId"] = operationID
      paths[documented.path(for: route), default: [:]][route.verb.lowercased()] = operation
    }
    for (path, item) in try self.streamOperations(schemas: &schemas) { paths[path, default: [:]].merge(item) { $1 } }
    for (path, item) in try self.playOperations(schemas: &schemas) { paths[path, default: [:]].merge(item) { $1 } }
    var components = self.envelopeSchemas
    for (name, schema) in schemas.components { components[name] = schema }
    let document: [String: Any] = [
      "openapi": "3.1.0",
      "info": [
        "title": "Quizwire API", "version": "v1",
        "description":
          "The HTTP/JSON gateway in front of Quizwire's services. Bodies are protobuf's canonical JSON; every answer is "
          + "the envelope {\"data\", \"meta\"} or {\"error\", \"meta\"}.",
      ],
      "paths": paths,
      "components": [
        "schemas": components, "responses": self.errorResponses, "headers": self.headerComponents,
        "parameters": self.parameterComponents,
        "securitySchemes": [
          "bearerAuth": ["type": "http", "scheme": "bearer", "bearerFormat": "JWT"],
          "apiKey": ["type": "apiKey", "in": "header", "name": "X-API-Key"],
        ],
      ],
      // The services decide what a caller may do; many routes also answer anonymous callers.
      "security": [["bearerAuth": [String]()], ["apiKey": [String]()], [String: Any]()],
    ]
    return try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
  }

  /// One operation: parameters, body, the success answer and the error answers. `names` are
  /// the path variables as the document spells them (`DocumentedPaths`).
  private static func operation(_ route: Route, names: [String], schemas: inout ProtoJSONSchemas) throws -> [String: Any] {
    let requestType = route.method.request.protoMessageName
    var parameters: [[String: Any]] = []
    for (variable, name) in zip(route.template.variables, names) {
      guard let leaf = schemas.schema.path(variable, in: requestType)?.last else { throw ProtoJSONSchemas.BuildError.unknownType(variable) }
      parameters.append(["name": name, "in": "path", "required": true, "schema": try schemas.value(of: leaf)])
    }
    if route.body != .whole {
      var excluded = Set(route.template.variables)
      if case .field(let name) = route.body { excluded.insert(name) }
      try self.queryParameters(of: requestType, prefix: ("", ""), excluded: excluded, depth: 0, schemas: &schemas, into: &parameters)
    }
    var operation: [String: Any] = ["summary": route.method.fullName, "tags": [route.method.service], "parameters": parameters]

    switch route.body {
    case .none: break
    case .whole:
      // Path variables win over the body, so the body schema leaves the fields they bind out.
      let bound = Set(route.template.variables.filter { !$0.contains(".") })
      let body = bound.isEmpty ? try schemas.reference(requestType) : try schemas.object(requestType, excluding: bound)
      operation["requestBody"] = ["content": ["application/json": ["schema": body]]]
    case .field(let name):
      guard let field = schemas.schema.field(name, in: requestType) else { throw ProtoJSONSchemas.BuildError.unknownType(name) }
      operation["requestBody"] = ["required": true, "content": ["application/json": ["schema": try schemas.reference(field.typeName)]]]
    }

    var responses: [String: Any] = [:]
    var success: [String: Any] = ["description": route.method.fullName, "headers": ["X-Request-Id": ["$ref": "#/components/headers/X-Request-Id"]]]
    if route.successStatus != 204 {
      success["content"] = ["application/json": ["schema": try self.successEnvelope(route.method.response.protoMessageName, schemas: &schemas)]]
    }
    if route.successStatus == 201, route.location != nil {
      success["headers"] = [
        "X-Request-Id": ["$ref": "#/components/headers/X-Request-Id"],
        "Location": ["description": "the created resource's path", "schema": ["type": "string"]],
      ]
    }
    responses[String(route.successStatus)] = success
    for status in self.errorStatuses(hasBody: route.body != .none) {
      responses[String(status)] = ["$ref": "#/components/responses/Error\(status)"]
    }
    operation["responses"] = responses
    return operation
  }

  /// Every request field the binder takes from the query string: scalars, enums, repeated
  /// scalars and string-valued well-known types, through singular nested messages as
  /// "outer.inner"; list fields by their friendlier alias (`limit` for `page_size`) when the
  /// message has no field of that name, as `RequestBinder` resolves them.
  private static func queryParameters(
    of message: String, prefix: (proto: String, json: String), excluded: Set<String>, depth: Int, schemas: inout ProtoJSONSchemas,
    into parameters: inout [[String: Any]]
  ) throws {
    let schema = schemas.schema
    for field in schema.fields(of: message) ?? [] {
      let protoPath = prefix.proto + field.name
      guard !excluded.contains(protoPath), field.mapValue == nil else { continue }
      if field.type == .message, !MessageSchema.stringWellKnownTypes.contains(field.typeName) {
        // Nested messages are reached field by field; a self-containing message stops at 3.
        guard !field.isRepeated, depth < 3 else { continue }
        try self.queryParameters(
          of: field.typeName, prefix: (protoPath + ".", prefix.json + field.jsonName + "."), excluded: excluded, depth: depth + 1,
          schemas: &schemas, into: &parameters)
        continue
      }
      var name = prefix.json + field.jsonName
      if prefix.proto.isEmpty, let alias = RequestBinder.aliases.first(where: { $0.value == field.name })?.key,
        schema.field(alias, in: message) == nil
      {
        name = alias
      }
      var parameter: [String: Any] = ["name": name, "in": "query", "required": false, "schema": try schemas.value(of: field)]
      if field.isRepeated {
        // Repeated fields by repeating the parameter (?tag=a&tag=b).
        parameter["style"] = "form"
        parameter["explode"] = true
      }
      parameters.append(parameter)
    }
  }

  /// `{"data", "meta"}` for a response message: a list (one repeated field, and a
  /// `next_page_token` or nothing else — ResponseShaper's rule) is the array itself, its
  /// paging and other fields in `meta`; anything else is the message.
  private static func successEnvelope(_ response: String, schemas: inout ProtoJSONSchemas) throws -> [String: Any] {
    let fields = schemas.schema.fields(of: response) ?? []
    let repeated = fields.filter(\.isRepeated)
    let paged = fields.contains { $0.name == "next_page_token" }
    var data = try schemas.reference(response)
    var meta: [String: Any] = ["$ref": "#/components/schemas/Meta"]
    if repeated.count == 1, paged || fields.count == 1 {
      data = try schemas.value(of: repeated[0])
      var extra: [String: Any] = [:]
      for field in fields where ![repeated[0].name, "next_page_token", "total_size"].contains(field.name) {
        extra[field.jsonName] = try schemas.value(of: field)
      }
      var required = ["request_id", "timestamp"]
      if paged { required.append("pagination") }
      if paged || !extra.isEmpty {
        meta = ["allOf": [meta, ["type": "object", "required": required, "properties": extra]]]
      }
    }
    return ["type": "object", "required": ["data", "meta"], "properties": ["data": data, "meta": meta], "additionalProperties": false]
  }

  /// The error statuses any route can answer: every row of the status table, plus 413 and 415
  /// where a body is read.
  static func errorStatuses(hasBody: Bool) -> [Int] {
    var statuses = Set(self.statusRows.map(\.httpStatus))
    if hasBody { statuses.formUnion([413, 415]) }
    return statuses.sorted()
  }

  /// The status table's rows, one per canonical code (OK has none).
  static var statusRows: [StatusTable.Row] {
    (1...16).compactMap { Status.Code(rawValue: $0).flatMap(RPCError.Code.init).map(StatusTable.row(for:)) }
  }

  /// One shared response per error status: the error envelope, and the headers its row asks for.
  private static var errorResponses: [String: Any] {
    var responses: [String: Any] = [:]
    for status in self.errorStatuses(hasBody: true) {
      let rows = self.statusRows.filter { $0.httpStatus == status }
      let names = rows.isEmpty ? [StatusTable.gatewayStatus(status)] : rows.map(\.status)
      responses["Error\(status)"] = [
        "description": "error.status " + names.joined(separator: " or "), "headers": self.errorHeaders(status: status, rows: rows),
        "content": ["application/json": ["schema": ["$ref": "#/components/schemas/ErrorEnvelope"]]],
      ]
    }
    for (name, response) in self.policyResponses { responses[name] = response }
    return responses
  }

  /// The envelope's own schemas (Envelope.swift, APIError.swift), not derived from protos.
  private static var envelopeSchemas: [String: [String: Any]] {
    let detail: [String: Any] = [
      "type": "object", "required": ["@type"], "properties": ["@type": ["type": "string"]],
      "description": "a google.rpc ErrorInfo, BadRequest or RetryInfo in protobuf JSON",
    ]
    return [
      "Meta": [
        "type": "object", "required": ["request_id", "timestamp"],
        "properties": [
          "request_id": ["type": "string"], "timestamp": ["type": "string", "format": "date-time"],
          "pagination": ["$ref": "#/components/schemas/Pagination"],
        ],
      ],
      "Pagination": [
        "type": "object", "required": ["next_cursor"], "additionalProperties": false,
        "properties": [
          "next_cursor": ["type": ["string", "null"], "description": "null on the last page"],
          "limit": ["type": "integer"], "total": ["type": "integer"],
        ],
      ],
      "Error": [
        "type": "object", "required": ["code", "status", "message", "details"], "additionalProperties": false,
        "properties": [
          "code": ["type": "integer", "description": "the HTTP status"], "status": ["type": "string", "description": "the canonical code name"],
          "reason": ["type": "string", "description": "the service's ErrorInfo.reason"], "message": ["type": "string"],
          "details": ["type": "array", "items": detail],
        ],
      ],
      "ErrorEnvelope": [
        "type": "object", "required": ["error", "meta"], "additionalProperties": false,
        "properties": ["error": ["$ref": "#/components/schemas/Error"], "meta": ["$ref": "#/components/schemas/Meta"]],
      ],
    ]
  }
}
