import SwiftProtobuf

/// The messages of the descriptor set, by full name: what the binder needs to type query
/// parameters and path variables, to check request bodies field by field, and to shape
/// responses (which field of a list response is the list).
public struct MessageSchema: Sendable {
  /// One field as JSON sees it.
  public struct Field: Sendable, Hashable {
    public var name: String
    public var jsonName: String
    public var type: Google_Protobuf_FieldDescriptorProto.TypeEnum
    public var isRepeated: Bool
    /// ".pkg.Message" / ".pkg.Enum" for message and enum fields.
    public var typeName: String
    /// A `map<…>`: JSON object of values of `mapValue`'s type.
    public var mapValue: MapValue?
  }

  /// The value type of a map field (its entry message's field 2).
  public struct MapValue: Sendable, Hashable {
    public var type: Google_Protobuf_FieldDescriptorProto.TypeEnum
    public var typeName: String
  }

  private var messages: [String: [Field]] = [:]

  /// - Parameter files: every file of the set (with imports), so field types resolve.
  public init(files: [Google_Protobuf_FileDescriptorProto]) {
    var entries: [String: Google_Protobuf_DescriptorProto] = [:]
    var all: [(String, Google_Protobuf_DescriptorProto)] = []
    func index(_ prefix: String, _ message: Google_Protobuf_DescriptorProto) {
      let name = prefix + "." + message.name
      all.append((name, message))
      if message.options.mapEntry { entries[name] = message }
      for nested in message.nestedType { index(name, nested) }
    }
    for file in files {
      for message in file.messageType { index(file.package.isEmpty ? "" : "." + file.package, message) }
    }
    for (name, message) in all {
      self.messages[name] = message.field.map { field in
        var mapValue: MapValue?
        if field.type == .message, let entry = entries[field.typeName], entry.field.count == 2 {
          mapValue = MapValue(type: entry.field[1].type, typeName: entry.field[1].typeName)
        }
        return Field(
          name: field.name, jsonName: field.hasJsonName ? field.jsonName : field.name, type: field.type,
          isRepeated: field.label == .repeated && mapValue == nil, typeName: field.typeName, mapValue: mapValue)
      }
    }
  }

  /// The fields of a message by full name ("quiz.v1.Quiz" or ".quiz.v1.Quiz"); nil if unknown.
  public func fields(of message: String) -> [Field]? {
    self.messages[message.hasPrefix(".") ? message : "." + message]
  }

  /// A field by its proto name or its JSON name, as protobuf's JSON parsers accept both.
  public func field(_ name: String, in message: String) -> Field? {
    self.fields(of: message)?.first { $0.jsonName == name || $0.name == name }
  }

  /// Resolves "quiz.id" from `message`: every field but the last must be a singular message.
  public func path(_ path: String, in message: String) -> [Field]? {
    var current = message
    var fields: [Field] = []
    for (index, component) in path.split(separator: ".").enumerated() {
      guard let field = self.field(String(component), in: current) else { return nil }
      fields.append(field)
      if index < path.split(separator: ".").count - 1 {
        guard field.type == .message, !field.isRepeated, field.mapValue == nil else { return nil }
        current = field.typeName
      }
    }
    return fields.isEmpty ? nil : fields
  }

  /// Well-known types whose JSON form is a string (RFC 3339 time, "1.5s", "a,b.c").
  static let stringWellKnownTypes: Set<String> = [
    ".google.protobuf.Timestamp", ".google.protobuf.Duration", ".google.protobuf.FieldMask",
  ]
  /// Well-known types whose JSON form is any value.
  static let anyValueWellKnownTypes: Set<String> = [
    ".google.protobuf.Struct", ".google.protobuf.Value", ".google.protobuf.ListValue", ".google.protobuf.Any",
  ]
}
