import Foundation
import SwiftProtobuf

/// A parsed JSON value, kind by kind: JSONDecoder tells `true` from `1`, which
/// JSONSerialization's NSNumber does not, so wrong types are caught exactly.
indirect enum JSONValue: Decodable, Sendable {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  init(from decoder: any Swift.Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSONValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }
}

/// Checks a JSON request body against its message before protobuf decodes it, so a bad body
/// is answered with one field violation per wrong field (unknown name, wrong type) instead
/// of the decoder's first complaint. protobuf's own decoder stays the final judge.
struct BodyChecker {
  let schema: MessageSchema

  /// Violations of `value` as a `message`, paths prefixed with `path`.
  func check(_ value: JSONValue, message: String, path: String, into violations: inout [APIError.FieldViolation]) {
    guard case .object(let object) = value else {
      violations.append(.init(field: path, description: "must be a JSON object"))
      return
    }
    for key in object.keys.sorted() {
      let fieldPath = path.isEmpty ? key : path + "." + key
      guard let field = self.schema.field(key, in: message) else {
        violations.append(.init(field: fieldPath, description: "unknown field"))
        continue
      }
      self.check(object[key]!, field: field, path: fieldPath, into: &violations)
    }
  }

  private func check(_ value: JSONValue, field: MessageSchema.Field, path: String, into violations: inout [APIError.FieldViolation]) {
    if case .null = value { return }  // null is the default value for every field
    if let map = field.mapValue {
      guard case .object(let object) = value else {
        violations.append(.init(field: path, description: "must be a JSON object"))
        return
      }
      for (key, element) in object.sorted(by: { $0.key < $1.key }) {
        self.checkSingle(element, type: map.type, typeName: map.typeName, path: path + "[\"\(key)\"]", into: &violations)
      }
      return
    }
    if field.isRepeated {
      guard case .array(let elements) = value else {
        violations.append(.init(field: path, description: "must be a JSON array"))
        return
      }
      for (index, element) in elements.enumerated() {
        self.checkSingle(element, type: field.type, typeName: field.typeName, path: "\(path)[\(index)]", into: &violations)
      }
      return
    }
    self.checkSingle(value, type: field.type, typeName: field.typeName, path: path, into: &violations)
  }

  private func checkSingle(
    _ value: JSONValue, type: Google_Protobuf_FieldDescriptorProto.TypeEnum, typeName: String, path: String,
    into violations: inout [APIError.FieldViolation]
  ) {
    if let problem = Self.problem(value, type: type, typeName: typeName) {
      violations.append(.init(field: path, description: problem))
    } else if type == .message, !MessageSchema.stringWellKnownTypes.contains(typeName),
      !MessageSchema.anyValueWellKnownTypes.contains(typeName), !typeName.hasPrefix(".google.protobuf.")
    {
      self.check(value, message: typeName, path: path, into: &violations)
    }
  }

  /// What is wrong with `value` as one value of `type` (protobuf's JSON mapping), if anything.
  static func problem(_ value: JSONValue, type: Google_Protobuf_FieldDescriptorProto.TypeEnum, typeName: String) -> String? {
    switch type {
    case .string:
      if case .string = value { return nil }
      return "must be a string"
    case .bytes:
      if case .string(let text) = value, Data(base64Encoded: Self.padded(text)) != nil { return nil }
      return "must be a base64 string"
    case .bool:
      if case .bool = value { return nil }
      return "must be true or false"
    case .int32, .sint32, .sfixed32, .uint32, .fixed32, .int64, .sint64, .sfixed64, .uint64, .fixed64:
      switch value {
      case .number(let number) where number.rounded() == number: return nil
      case .string(let text) where Int64(text) != nil || UInt64(text) != nil: return nil
      default: return "must be an integer"
      }
    case .double, .float:
      switch value {
      case .number: return nil
      case .string(let text) where Double(text) != nil || ["NaN", "Infinity", "-Infinity"].contains(text): return nil
      default: return "must be a number"
      }
    case .`enum`:
      switch value {
      case .string, .number: return nil
      default: return "must be an enum value name"
      }
    case .message:
      if MessageSchema.anyValueWellKnownTypes.contains(typeName) { return nil }
      if MessageSchema.stringWellKnownTypes.contains(typeName) {
        if case .string = value { return nil }
        return typeName == ".google.protobuf.Timestamp" ? "must be an RFC 3339 timestamp string" : "must be a string"
      }
      if typeName.hasPrefix(".google.protobuf.") { return nil }  // wrappers: protobuf decides
      if case .object = value { return nil }
      return "must be a JSON object"
    default:
      return nil
    }
  }

  private static func padded(_ text: String) -> String {
    let base = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    return base + String(repeating: "=", count: (4 - base.count % 4) % 4)
  }
}
