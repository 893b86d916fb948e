import Foundation

/// An HttpRule path template: literal segments and `{field.path}` variables, each variable
/// one segment (HttpRule's `{name}` form, the only one our protos use; `{name=…}` patterns
/// and `**` are refused when the table loads rather than matched wrongly).
public struct PathTemplate: Sendable, Hashable, CustomStringConvertible {
  public enum Segment: Sendable, Hashable {
    case literal(String)
    /// The request field the segment binds, e.g. "quiz.id".
    case variable(String)
  }

  public let segments: [Segment]
  public let description: String

  public enum ParseError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalid(template: String, reason: String)
    public var description: String {
      switch self {
      case .invalid(let template, let reason): "path template \"\(template)\": \(reason)"
      }
    }
  }

  public init(_ text: String) throws {
    guard text.hasPrefix("/") else { throw ParseError.invalid(template: text, reason: "must start with /") }
    var segments: [Segment] = []
    for part in text.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
      if part.hasPrefix("{") {
        guard part.hasSuffix("}"), part.count > 2 else { throw ParseError.invalid(template: text, reason: "unclosed variable \(part)") }
        let name = part.dropFirst().dropLast()
        guard !name.contains("="), !name.contains("*") else {
          throw ParseError.invalid(template: text, reason: "variable patterns ({name=…}) are not supported: \(part)")
        }
        segments.append(.variable(String(name)))
      } else {
        guard !part.isEmpty, !part.contains("*"), !part.contains(":"), !part.contains("{") else {
          throw ParseError.invalid(template: text, reason: "unsupported segment \"\(part)\"")
        }
        segments.append(.literal(String(part)))
      }
    }
    self.segments = segments
    self.description = text
  }

  /// The variables in order.
  public var variables: [String] {
    self.segments.compactMap {
      if case .variable(let name) = $0 { return name }
      return nil
    }
  }

  /// The template with every variable as `*`: two routes with one verb and one shape could
  /// never be told apart, so the table refuses them.
  public var shape: String {
    "/" + self.segments.map { if case .literal(let text) = $0 { text } else { "*" } }.joined(separator: "/")
  }

  /// How many literal segments: the more specific route wins when two match.
  var literalCount: Int {
    self.segments.count(where: { if case .literal = $0 { true } else { false } })
  }

  /// The variable bindings when `path` (percent-decoded segments) matches, else nil.
  public func match(_ path: [String]) -> [(field: String, value: String)]? {
    guard path.count == self.segments.count else { return nil }
    var bindings: [(field: String, value: String)] = []
    for (segment, part) in zip(self.segments, path) {
      switch segment {
      case .literal(let text): guard text == part else { return nil }
      case .variable(let name):
        guard !part.isEmpty else { return nil }
        bindings.append((name, part))
      }
    }
    return bindings
  }

  /// The path with `values` in place of the variables (percent-encoded), nil if one is missing.
  public func expand(_ values: [String: String]) -> String? {
    var parts: [String] = []
    for segment in self.segments {
      switch segment {
      case .literal(let text): parts.append(text)
      case .variable(let name):
        guard let value = values[name], !value.isEmpty else { return nil }
        parts.append(value.addingPercentEncoding(withAllowedCharacters: Self.segmentCharacters) ?? value)
      }
    }
    return "/" + parts.joined(separator: "/")
  }

  /// Splits a request path into percent-decoded segments ("/a/b%2Fc" → ["a", "b/c"]).
  public static func segments(of path: String) -> [String] {
    path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map { part in
      // Decoding is slow in Foundation; most segments have nothing to decode.
      part.utf8.contains(UInt8(ascii: "%")) ? String(part).removingPercentEncoding ?? String(part) : String(part)
    }
  }

  private static let segmentCharacters = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))
}
