import Foundation

/// Parses a `filter` string into a `QuizFilter`:
///
/// ```
/// filter     := or
/// or         := and ("OR" and)*
/// and        := unary ("AND" unary)*
/// unary      := "NOT" unary | "(" or ")" | comparison
/// comparison := FIELD OP value          OP: = != < <= > >= :
/// value      := "string" | 'string' | bareword      escapes: \\ \" \'
/// ```
///
/// Hostile input is refused, never trusted: the length is checked before anything is
/// read, and nesting is counted on the way down, so 10,000 `(` fail at level 33 instead of
/// recursing 10,000 frames. Errors name the 1-based character position.
public enum QuizFilterParser {
  /// nil for an empty (or all-blank) filter: everything the caller may see.
  public static func parse(_ text: String) throws(QuizQueryError) -> QuizFilter? {
    let count = text.unicodeScalars.count
    guard count <= QuizFilterLimits.maxLength else {
      throw .filter("longer than \(QuizFilterLimits.maxLength) characters (\(count))")
    }
    var parser = Parser(tokens: try Lexer.tokens(of: text))
    if parser.peek.kind == .end { return nil }
    let filter = try parser.parseOr(depth: 0)
    guard parser.peek.kind == .end else { throw .filter("expected AND, OR or the end, found \(parser.peek.kind)", at: parser.peek.position) }
    return filter
  }
}

struct Token: Sendable {
  enum Kind: Sendable, Equatable, CustomStringConvertible {
    case openParen, closeParen, and, or, not, end
    case op(String)
    case word(String)
    case string(String)

    var description: String {
      switch self {
      case .openParen: "\"(\""
      case .closeParen: "\")\""
      case .and: "AND"
      case .or: "OR"
      case .not: "NOT"
      case .end: "the end of the filter"
      case .op(let op): "\"\(op)\""
      case .word(let w): "\"\(w)\""
      case .string: "a quoted string"
      }
    }
  }

  var kind: Kind
  /// 1-based character position of the token's first character.
  var position: Int
}

enum Lexer {
  static func tokens(of text: String) throws(QuizQueryError) -> [Token] {
    let scalars = Array(text.unicodeScalars)
    var tokens: [Token] = []
    var i = 0
    while i < scalars.count {
      let c = scalars[i]
      let position = i + 1
      if c == " " || c == "\t" || c == "\n" || c == "\r" {
        i += 1
        continue
      }
      if c.properties.generalCategory == .control { throw .filter("control character U+\(hex(c)) is not allowed", at: position) }
      switch c {
      case "(": tokens.append(Token(kind: .openParen, position: position)); i += 1
      case ")": tokens.append(Token(kind: .closeParen, position: position)); i += 1
      case "=", ":": tokens.append(Token(kind: .op(String(c)), position: position)); i += 1
      case "<", ">", "!":
        if i + 1 < scalars.count, scalars[i + 1] == "=" {
          tokens.append(Token(kind: .op(String(c) + "="), position: position))
          i += 2
        } else if c == "!" {
          throw .filter("\"!\" must be followed by \"=\"", at: position)
        } else {
          tokens.append(Token(kind: .op(String(c)), position: position))
          i += 1
        }
      case "\"", "'":
        let (value, next) = try string(scalars, from: i)
        tokens.append(Token(kind: .string(value), position: position))
        i = next
      default:
        guard isWordScalar(c) else { throw .filter("unexpected character \"\(c)\"", at: position) }
        var end = i
        while end < scalars.count, isWordScalar(scalars[end]) { end += 1 }
        var word = String.UnicodeScalarView()
        word.append(contentsOf: scalars[i..<end])
        let text = String(word)
        let kind: Token.Kind =
          switch text {
          case "AND": .and
          case "OR": .or
          case "NOT": .not
          default: .word(text)
          }
        tokens.append(Token(kind: kind, position: position))
        i = end
      }
    }
    tokens.append(Token(kind: .end, position: scalars.count + 1))
    return tokens
  }

  /// A quoted string starting at `start` (its opening quote): the value and the index after
  /// the closing quote.
  private static func string(_ scalars: [Unicode.Scalar], from start: Int) throws(QuizQueryError) -> (String, Int) {
    let quote = scalars[start]
    var value = String.UnicodeScalarView()
    var i = start + 1
    while i < scalars.count {
      let c = scalars[i]
      if c == quote { return (String(value), i + 1) }
      if c.properties.generalCategory == .control { throw .filter("control character U+\(hex(c)) is not allowed", at: i + 1) }
      if c == "\\" {
        guard i + 1 < scalars.count else { break }
        let escaped = scalars[i + 1]
        guard escaped == "\\" || escaped == "\"" || escaped == "'" else {
          throw .filter("unknown escape \"\\\(escaped)\" (use \\\\, \\\" or \\')", at: i + 1)
        }
        value.append(escaped)
        i += 2
        continue
      }
      value.append(c)
      i += 1
    }
    throw .filter("unterminated string", at: start + 1)
  }

  private static func isWordScalar(_ c: Unicode.Scalar) -> Bool {
    switch c {
    case "a"..."z", "A"..."Z", "0"..."9", "_", "-", ".": true
    default: false
    }
  }

  private static func hex(_ c: Unicode.Scalar) -> String {
    let digits = String(c.value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
  }
}

struct Parser {
  let tokens: [Token]
  var index = 0
  var terms = 0

  init(tokens: [Token]) { self.tokens = tokens }

  var peek: Token { self.tokens[self.index] }

  mutating func advance() -> Token {
    defer { if self.index < self.tokens.count - 1 { self.index += 1 } }
    return self.tokens[self.index]
  }

  mutating func parseOr(depth: Int) throws(QuizQueryError) -> QuizFilter {
    var parts = [try self.parseAnd(depth: depth)]
    while self.peek.kind == .or {
      _ = self.advance()
      parts.append(try self.parseAnd(depth: depth))
    }
    return parts.count == 1 ? parts[0] : .or(parts)
  }

  mutating func parseAnd(depth: Int) throws(QuizQueryError) -> QuizFilter {
    var parts = [try self.parseUnary(depth: depth)]
    while self.peek.kind == .and {
      _ = self.advance()
      parts.append(try self.parseUnary(depth: depth))
    }
    return parts.count == 1 ? parts[0] : .and(parts)
  }

  mutating func parseUnary(depth: Int) throws(QuizQueryError) -> QuizFilter {
    let token = self.peek
    switch token.kind {
    case .not:
      _ = self.advance()
      try Self.check(depth: depth + 1, at: token.position)
      return .not(try self.parseUnary(depth: depth + 1))
    case .openParen:
      _ = self.advance()
      try Self.check(depth: depth + 1, at: token.position)
      let inner = try self.parseOr(depth: depth + 1)
      guard self.peek.kind == .closeParen else {
        throw .filter("expected \")\" to close the \"(\" at \(token.position), found \(self.peek.kind)", at: self.peek.position)
      }
      _ = self.advance()
      return inner
    default:
      return .predicate(try self.parseComparison())
    }
  }

  static func check(depth: Int, at position: Int) throws(QuizQueryError) {
    guard depth <= QuizFilterLimits.maxDepth else {
      throw .filter("nested deeper than \(QuizFilterLimits.maxDepth) levels", at: position)
    }
  }

  mutating func parseComparison() throws(QuizQueryError) -> QuizPredicate {
    let fieldToken = self.advance()
    guard case .word(let field) = fieldToken.kind else {
      throw .filter("expected a field name, found \(fieldToken.kind)", at: fieldToken.position)
    }
    self.terms += 1
    guard self.terms <= QuizFilterLimits.maxTerms else {
      throw .filter("more than \(QuizFilterLimits.maxTerms) terms", at: fieldToken.position)
    }
    let opToken = self.advance()
    guard case .op(let op) = opToken.kind else {
      throw .filter("expected an operator (= != < <= > >= :) after \(field), found \(opToken.kind)", at: opToken.position)
    }
    let valueToken = self.advance()
    let value: String
    switch valueToken.kind {
    case .word(let w): value = w
    case .string(let s): value = s
    default: throw .filter("expected a value after \(field) \(op), found \(valueToken.kind)", at: valueToken.position)
    }
    return try QuizFilterFields.predicate(field: field, op: op, value: value, fieldAt: fieldToken.position, valueAt: valueToken.position)
  }
}
