import Foundation

/// The filter's field whitelist: which operators each field takes and what its values are.
enum QuizFilterFields {
  static let names = ["state", "tag", "author_id", "create_time", "update_time", "title"]
  /// Longest value accepted (titles are ≤ 200; ids and tags are shorter).
  static let maxValueLength = 256

  static func predicate(field: String, op: String, value: String, fieldAt: Int, valueAt: Int) throws(QuizQueryError) -> QuizPredicate {
    func refuse(_ allowed: String) -> QuizQueryError {
      .filter("\(field) does not take \"\(op)\" (it takes \(allowed))", at: fieldAt)
    }
    guard value.unicodeScalars.count <= Self.maxValueLength else {
      throw .filter("value longer than \(Self.maxValueLength) characters", at: valueAt)
    }
    switch field {
    case "state":
      guard op == "=" || op == "!=" else { throw refuse("= and !=") }
      // `PUBLISHED`, or the enum value's own name `QUIZ_STATE_PUBLISHED`.
      let bare = value.hasPrefix("QUIZ_STATE_") ? String(value.dropFirst("QUIZ_STATE_".count)) : value
      guard let state = QuizState(rawValue: bare) else {
        throw .filter("unknown state \"\(value)\" (DRAFT, PUBLISHED, ARCHIVED or QUIZ_STATE_…)", at: valueAt)
      }
      return .state(state, equal: op == "=")
    case "tag":
      // `tag : x` reads as "has tag x" (AIP-160's has operator on a repeated field).
      guard op == "=" || op == ":" else { throw refuse("= and :") }
      return .tag(value)
    case "author_id":
      guard op == "=" || op == "!=" else { throw refuse("= and !=") }
      return .author(value, equal: op == "=")
    case "create_time", "update_time":
      guard let comparison = QuizComparison(rawValue: op) else { throw refuse("= != < <= > >=") }
      guard let ms = RFC3339.epochMilliseconds(value) else {
        throw .filter("\(field) needs an RFC 3339 time such as \"2026-01-01T00:00:00Z\", found \"\(value)\"", at: valueAt)
      }
      return .time(field == "create_time" ? .createTime : .updateTime, comparison, epochMs: ms)
    case "title":
      switch op {
      case ":": return .titleContains(value)
      case "=": return .titleEquals(value)
      default: throw refuse(": (contains, case-insensitive) and =")
      }
    default:
      throw .filter("unknown field \"\(field)\" (fields: \(Self.names.joined(separator: ", ")))", at: fieldAt)
    }
  }
}

/// RFC 3339 date-times (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250+02:00`), to epoch
/// milliseconds. A zone is required: a time without one means different instants to
/// different callers.
enum RFC3339 {
  static func epochMilliseconds(_ text: String) -> Int64? {
    // Shape first: ISO8601DateFormatter is lenient about some forms RFC 3339 rejects.
    guard text.utf8.count >= 20, text.utf8.count <= 35 else { return nil }
    let plain = ISO8601DateFormatter()
    plain.formatOptions = [.withInternetDateTime]
    if let date = plain.date(from: text) { return Self.ms(date) }
    let fractional = ISO8601DateFormatter()
    fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return fractional.date(from: text).map(Self.ms)
  }

  private static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
}
