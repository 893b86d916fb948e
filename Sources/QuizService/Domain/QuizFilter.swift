import Foundation

/// A parsed `ListQuizzes.filter` (AIP-160 subset): predicates on whitelisted fields joined
/// with AND / OR / NOT. Built only by `QuizFilterParser`, so every value in it is already
/// checked; `QuizQuerySQL` compiles it to bound SQL.
public indirect enum QuizFilter: Sendable, Hashable {
  case predicate(QuizPredicate)
  case and([QuizFilter])
  case or([QuizFilter])
  case not(QuizFilter)

  /// One spelling per meaning (whitespace, quote style and bareword-vs-string don't
  /// matter): what a page token's fingerprint is taken over, so `state=PUBLISHED` and
  /// `state = "PUBLISHED"` share tokens.
  public var canonical: String {
    switch self {
    case .predicate(let p): p.canonical
    case .and(let parts): "(" + parts.map(\.canonical).joined(separator: " AND ") + ")"
    case .or(let parts): "(" + parts.map(\.canonical).joined(separator: " OR ") + ")"
    case .not(let inner): "NOT " + inner.canonical
    }
  }
}

/// One comparison, typed by field: the parser only makes the combinations the whitelist
/// allows, so the compiler has no invalid case to handle.
public enum QuizPredicate: Sendable, Hashable {
  case state(QuizState, equal: Bool)
  /// The quiz carries this tag (exact match).
  case tag(String)
  case author(String, equal: Bool)
  case time(QuizTimeField, QuizComparison, epochMs: Int64)
  /// Case-insensitive substring of the title.
  case titleContains(String)
  case titleEquals(String)

  var canonical: String {
    switch self {
    case .state(let s, let equal): "state \(equal ? "=" : "!=") \(s.rawValue)"
    case .tag(let t): "tag = \(Self.quote(t))"
    case .author(let a, let equal): "author_id \(equal ? "=" : "!=") \(Self.quote(a))"
    case .time(let field, let op, let ms): "\(field.rawValue) \(op.rawValue) \(ms)"
    case .titleContains(let t): "title : \(Self.quote(t))"
    case .titleEquals(let t): "title = \(Self.quote(t))"
    }
  }

  static func quote(_ text: String) -> String {
    "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
  }
}

public enum QuizTimeField: String, Sendable, Hashable {
  case createTime = "create_time", updateTime = "update_time"
}

public enum QuizComparison: String, Sendable, Hashable {
  case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
}

/// The filter's limits (issue 12): longer, more terms or deeper is INVALID_ARGUMENT.
public enum QuizFilterLimits {
  public static let maxLength = 2000
  public static let maxTerms = 50
  /// Parentheses and NOT each open a level.
  public static let maxDepth = 32
}
