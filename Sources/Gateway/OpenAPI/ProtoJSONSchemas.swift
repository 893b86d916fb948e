import Foundation
import SwiftProtobuf

/// JSON Schemas (OpenAPI 3.1's dialect) of proto messages as the gateway writes and reads them:
/// protobuf's canonical JSON mapping, so the document describes the bytes on the wire rather
/// than the Swift types. Messages and enums become components (named by their full proto
/// name, "quiz.v1.Quiz"), referenced with `$ref`; only the ones a route reaches are emitted.
struct ProtoJSONSchemas {
  enum BuildError: Error, Sendable, CustomStringConvertible {
    case unknownType(String)
    var description: String {
      switch self {
      case .unknownType(let name): "openapi: \(name) is not in the descriptor set"
      }
    }
  }

  let schema: MessageSchema
  /// Enum values by full name (".quiz.v1.QuestionKind"): MessageSchema keeps fields only, so
  /// the enums are read from the same descriptor set the route table was built from.
  private let enums: [String: [String]]
  /// Components reached so far, by component name; filled as `reference` is asked for.
  private(set) var components: [String: [String: Any]] = [:]

  init(schema: MessageSchema, descriptorSet: Data) throws {
    self.schema = schema
    let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: descriptorSet)
    var enums: [String: [String]] = [:]
    func index(_ prefix: String, _ message: Google_Protobuf_DescriptorProto) {
      let name = prefix + "." + message.name
      for nested in message.enumType { enums[name + "." + nested.name] = nested.value.map(\.name) }
      for nested in message.nestedType { index(name, nested) }
    }
    for file in set.file {
      let prefix = file.package.isEmpty ? "" : "." + file.package
      for item in file.enumType { enums[prefix + "." + item.name] = item.value.map(\.name) }
      for message in file.messageType { index(prefix, message) }
    }
    self.enums = enums
  }

  /// The component name of a type: its full name without the leading dot.
  static func componentName(_ typeName: String) -> String {
    typeName.hasPrefix(".") ? String(typeName.dropFirst()) : typeName
  }

  /// `{"$ref": …}` to the message's (or enum's) component, emitting it and everything it
  /// reaches first. Well-known types are inlined: their JSON form is a string or any value.
  mutating func reference(_ typeName: String) throws -> [String: Any] {
    let full = typeName.hasPrefix(".") ? typeName : "." + typeName
    if let inline = Self.wellKnown(full) { return inline }
    let name = Self.componentName(full)
    let ref: [String: Any] = ["$ref": "#/components/schemas/" + name]
    if self.components[name] != nil { return ref }
    if let values = self.enums[full] {
      self.components[name] = ["type": "string", "enum": values, "description": "protobuf enum \(name), written by its value names"]
      return ref
    }
    // A placeholder first, so a message that contains itself (directly or not) terminates.
    self.components[name] = [:]
    self.components[name] = try self.object(full, excluding: [])
    return ref
  }

  /// The object schema of a message, leaving out `excluding` (proto names of top-level
  /// fields, e.g. those a path variable binds).
  mutating func object(_ typeName: String, excluding: Set<String>) throws -> [String: Any] {
    guard let fields = self.schema.fields(of: typeName) else { throw BuildError.unknownType(typeName) }
    var properties: [String: Any] = [:]
    for field in fields where !excluding.contains(field.name) {
      properties[field.jsonName] = try self.value(of: field)
    }
    // Fields at their default value are left out of the JSON, so none is required; unknown
    // fields are refused (the binder decodes strictly).
    return [
      "type": "object", "properties": properties, "additionalProperties": false,
      "description": "protobuf message \(Self.componentName(typeName)) (canonical JSON)",
    ]
  }

  /// The schema of one field's JSON value: arrays for repeated, objects for maps.
  mutating func value(of field: MessageSchema.Field) throws -> [String: Any] {
    if let map = field.mapValue {
      return ["type": "object", "additionalProperties": try self.scalar(map.type, typeName: map.typeName)]
    }
    let single = try self.scalar(field.type, typeName: field.typeName)
    return field.isRepeated ? ["type": "array", "items": single] : single
  }

  /// One value of a proto type. int64 kinds are strings (JSON numbers can't hold them
  /// exactly), bytes base64, enums their names.
  mutating func scalar(_ type: Google_Protobuf_FieldDescriptorProto.TypeEnum, typeName: String) throws -> [String: Any] {
    switch type {
    case .double: return ["type": "number", "format": "double"]
    case .float: return ["type": "number", "format": "float"]
    case .int32, .sint32, .sfixed32: return ["type": "integer", "format": "int32"]
    case .uint32, .fixed32: return ["type": "integer", "format": "int64", "minimum": 0, "maximum": 4_294_967_295]
    case .int64, .sint64, .sfixed64: return ["type": "string", "format": "int64", "pattern": "^-?[0-9]+$"]
    case .uint64, .fixed64: return ["type": "string", "format": "uint64", "pattern": "^[0-9]+$"]
    case .bool: return ["type": "boolean"]
    case .string: return ["type": "string"]
    case .bytes: return ["type": "string", "contentEncoding": "base64"]
    case .enum, .message, .group: return try self.reference(typeName)
    }
  }

  /// Well-known types by their JSON mapping (protobuf's JSON spec, "JSON Mapping" table);
  /// a function rather than a static dictionary because `[String: Any]` isn't Sendable.
  static func wellKnown(_ typeName: String) -> [String: Any]? {
    switch typeName {
    case ".google.protobuf.Timestamp": ["type": "string", "format": "date-time"]
    case ".google.protobuf.Duration": ["type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "description": "seconds, e.g. \"1.5s\""]
    case ".google.protobuf.FieldMask": ["type": "string", "description": "comma-separated lowerCamelCase field paths"]
    case ".google.protobuf.Struct": ["type": "object"]
    case ".google.protobuf.ListValue": ["type": "array"]
    case ".google.protobuf.Value": [:]
    case ".google.protobuf.Empty": ["type": "object", "additionalProperties": false]
    case ".google.protobuf.Any": ["type": "object", "required": ["@type"], "properties": ["@type": ["type": "string"]]]
    // Wrappers are their wrapped value, or null.
    case ".google.protobuf.DoubleValue", ".google.protobuf.FloatValue": ["type": ["number", "null"]]
    case ".google.protobuf.Int64Value": ["type": ["string", "null"], "format": "int64"]
    case ".google.protobuf.UInt64Value": ["type": ["string", "null"], "format": "uint64"]
    case ".google.protobuf.Int32Value": ["type": ["integer", "null"], "format": "int32"]
    case ".google.protobuf.UInt32Value": ["type": ["integer", "null"], "minimum": 0]
    case ".google.protobuf.BoolValue": ["type": ["boolean", "null"]]
    case ".google.protobuf.StringValue": ["type": ["string", "null"]]
    case ".google.protobuf.BytesValue": ["type": ["string", "null"], "contentEncoding": "base64"]
    default: nil
    }
  }
}
