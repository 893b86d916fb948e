import Foundation
import SwiftProtobuf

/// Builds a route's request message from the HTTP request, as HttpRule says: path variables
/// into their fields, the body into the whole message or one field, everything else from the
/// query string. Anything wrong is a 400 with field violations, before any RPC is made.
struct RequestBinder {
  let schema: MessageSchema

  /// Query parameters with friendlier names than the request fields they fill, used when the
  /// request has that field and no field of the parameter's own name (docs/services.md,
  /// "Gateway": lists take `limit`, `cursor`, `sort`, `fields`).
  static let aliases: [String: String] = ["limit": "page_size", "cursor": "page_token", "sort": "order_by", "fields": "read_mask"]

  /// The request for `route`. `body` is the raw body (empty when none was sent).
  func bind<Request: SwiftProtobuf.Message>(
    _: Request.Type, route: Route, body: Data, bindings: [(field: String, value: String)], query: [(String, String)]
  ) throws(APIError) -> Request {
    let requestType = Request.protoMessageName
    var violations: [APIError.FieldViolation] = []
    var bodyKeys: [String] = []
    // The body, checked field by field against its message.
    var bodyJSON = "{}"
    if route.body != .none, !body.isEmpty {
      let value: JSONValue
      do { value = try JSONDecoder().decode(JSONValue.self, from: body) } catch {
        throw APIError.gateway(400, "the request body is not valid JSON", violations: [.init(field: "", description: "malformed JSON")])
      }
      let checker = BodyChecker(schema: self.schema)
      switch route.body {
      case .whole:
        checker.check(value, message: requestType, path: "", into: &violations)
        bodyJSON = String(decoding: body, as: UTF8.self)
      case .field(let name):
        let field = self.schema.field(name, in: requestType)!
        checker.check(value, message: field.typeName, path: "", into: &violations)
        if case .object(let object) = value {
          bodyKeys = object.keys.sorted().compactMap { self.schema.field($0, in: field.typeName)?.jsonName }
        }
        bodyJSON = "{\"\(field.jsonName)\":" + String(decoding: body, as: UTF8.self) + "}"
      case .none: break
      }
    }
    // Path variables and query parameters, typed by their fields.
    var bound = BoundFields()
    for (field, value) in bindings {
      if let problem = bound.set(field, [value], in: requestType, schema: self.schema) { violations.append(.init(field: field, description: problem)) }
    }
    var queryValues: [String: [String]] = [:]
    var order: [String] = []
    for (name, value) in query {
      if queryValues[name] == nil { order.append(name) }
      queryValues[name, default: []].append(value)
    }
    for name in order {
      if route.body == .whole {
        violations.append(.init(field: name, description: "unknown query parameter (this route takes its fields in the body)"))
        continue
      }
      var field = name
      if self.schema.path(name, in: requestType) == nil, let alias = Self.aliases[name], self.schema.field(alias, in: requestType) != nil {
        field = alias
      }
      if case .field(let bodyField) = route.body, field.split(separator: ".").first.map(String.init) == bodyField {
        violations.append(.init(field: name, description: "set in the body, not the query"))
        continue
      }
      if bindings.contains(where: { $0.field == field }) {
        violations.append(.init(field: name, description: "set by the path"))
        continue
      }
      if let problem = bound.set(field, queryValues[name]!, in: requestType, schema: self.schema) {
        violations.append(.init(field: name, description: problem))
      }
    }
    // PATCH fills the update mask from the keys sent (grpc-gateway's rule), so a partial body
    // updates only what it names.
    if route.verb == "PATCH", case .field = route.body, !bodyKeys.isEmpty, let mask = self.schema.field("update_mask", in: requestType),
      mask.typeName == ".google.protobuf.FieldMask", !queryValues.keys.contains(where: { $0 == mask.name || $0 == mask.jsonName })
    {
      _ = bound.set(mask.name, [bodyKeys.joined(separator: ",")], in: requestType, schema: self.schema)
    }
    guard violations.isEmpty else { throw APIError.gateway(400, Self.summary(violations), violations: violations) }
    // protobuf decodes strictly (unknown fields are errors); the path and query win over the
    // body by a binary merge of the second message.
    do {
      let extra = try Request(jsonUTF8Data: bound.json())
      // Most reads have no body: the bound fields are the whole request.
      if bodyJSON == "{}" { return extra }
      var message = try Request(jsonUTF8Data: Data(bodyJSON.utf8))
      try message.merge(serializedBytes: try extra.serializedBytes() as [UInt8])
      return message
    } catch {
      let violation = APIError.FieldViolation(field: "", description: "not a valid \(requestType): \(error)")
      throw APIError.gateway(400, Self.summary([violation]), violations: [violation])
    }
  }

  static func summary(_ violations: [APIError.FieldViolation]) -> String {
    "invalid request: " + violations.map { $0.field.isEmpty ? $0.description : "\($0.field): \($0.description)" }.joined(separator: "; ")
  }
}

/// Fields set from strings (path variables, query parameters), as a JSON object protobuf can
/// decode: integers as quoted strings (protobuf's JSON accepts them for every integer type),
/// booleans as literals, repeated fields as arrays.
struct BoundFields {
  private indirect enum Node {
    case value(Any)
    case object([String: Node])
  }
  private var root: [String: Node] = [:]

  /// Sets `path` to `values`; returns what is wrong instead, if anything.
  mutating func set(_ path: String, _ values: [String], in message: String, schema: MessageSchema) -> String? {
    guard let fields = schema.path(path, in: message) else { return "unknown field" }
    let leaf = fields[fields.count - 1]
    if leaf.mapValue != nil || (leaf.type == .message && !MessageSchema.stringWellKnownTypes.contains(leaf.typeName)) {
      return "can't be set from a URL (a message field)"
    }
    if !leaf.isRepeated, values.count > 1 { return "given more than once" }
    var converted: [Any] = []
    for value in values {
      switch leaf.type {
      case .bool:
        guard value == "true" || value == "false" else { return "must be true or false" }
        converted.append(value == "true")
      case .int32, .sint32, .sfixed32, .uint32, .fixed32, .int64, .sint64, .sfixed64, .uint64, .fixed64:
        guard Int64(value) != nil || UInt64(value) != nil else { return "must be an integer" }
        converted.append(value)
      case .double, .float:
        guard Double(value) != nil else { return "must be a number" }
        converted.append(value)
      default:
        converted.append(value)
      }
    }
    let leafValue: Any = leaf.isRepeated ? converted : converted[0]
    Self.insert(leafValue, at: fields.map(\.jsonName)[...], into: &self.root)
    return nil
  }

  private static func insert(_ value: Any, at path: ArraySlice<String>, into object: inout [String: Node]) {
    let key = path.first!
    if path.count == 1 {
      object[key] = .value(value)
      return
    }
    var child: [String: Node] = [:]
    if case .object(let existing)? = object[key] { child = existing }
    insert(value, at: path.dropFirst(), into: &child)
    object[key] = .object(child)
  }

  /// The bound fields as a JSON object. Written by hand: `JSONSerialization` (with its
  /// bridging of every dictionary) cost more than the rest of binding a read.
  func json() -> Data {
    var out = ""
    Self.write(self.root, into: &out)
    return Data(out.utf8)
  }

  private static func write(_ object: [String: Node], into out: inout String) {
    out += "{"
    for (index, (key, node)) in object.enumerated() {
      if index > 0 { out += "," }
      out += Envelope.quoted(key) + ":"
      switch node {
      case .value(let value): Self.write(value: value, into: &out)
      case .object(let child): Self.write(child, into: &out)
      }
    }
    out += "}"
  }

  /// The leaves `set` makes: booleans, strings (numbers stay strings) and arrays of them.
  private static func write(value: Any, into out: inout String) {
    switch value {
    case let flag as Bool: out += flag ? "true" : "false"
    case let text as String: out += Envelope.quoted(text)
    case let list as [Any]:
      out += "["
      for (index, element) in list.enumerated() {
        if index > 0 { out += "," }
        Self.write(value: element, into: &out)
      }
      out += "]"
    default: out += "null"
    }
  }
}
