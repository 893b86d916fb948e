import SQLKit

/// Which quizzes a caller may list. The handler decides (anonymous → `publishedOnly`,
/// a signed-in user → `publishedOrAuthoredBy(self)`, admin → `all`); the SQL enforces it.
/// Deleted rows are excluded unless the query's `showDeleted` (admins only, the handler's
/// call too).
public enum QuizVisibility: Sendable, Hashable {
  case publishedOnly
  case publishedOrAuthoredBy(String)
  case all
}

/// Compiles a `ListQuery` to SQL for `SELECT <columns> FROM quizzes` (the table unaliased:
/// the tag subquery refers to `quizzes.id`). Every value is bound, never spliced; LIKE
/// patterns escape `%`, `_` and `\` under `ESCAPE '\'`. The same SQL runs on SQLite and
/// PostgreSQL: nothing here differs by dialect, the indexes do (see the schema).
///
/// Index use: `state`/`author_id`/`create_time`/`update_time`/`title =` and each `order_by`
/// have a (column…, id) index; `tag =` is an `EXISTS` on `quiz_tags (tag, quiz_id)`;
/// `title :` is `lower(title) LIKE lower(?)`, which PostgreSQL answers from the `pg_trgm`
/// GIN index on `lower(title)` and SQLite evaluates while walking the order's index
/// (SQLite has no substring index; the LIMIT bounds that walk).
public enum QuizQuerySQL {
  /// ` WHERE … ORDER BY … LIMIT ? [OFFSET ?]`, fetching `query.fetchLimit` rows after
  /// `query.after`.
  public static func pageTail(_ query: ListQuery, visibility: QuizVisibility) -> SQLQueryString {
    var tail = " WHERE " + self.conditions(query, visibility: visibility, after: query.after)
    tail += " ORDER BY " + self.orderBy(query.order)
    tail += " LIMIT \(bind: query.fetchLimit)"
    if query.offset > 0 { tail += " OFFSET \(bind: query.offset)" }
    return tail
  }

  /// `SELECT COUNT(*) AS total FROM quizzes WHERE …`: the whole result's size, ignoring the
  /// page position (AIP-158 `total_size`).
  public static func count(_ query: ListQuery, visibility: QuizVisibility) -> SQLQueryString {
    "SELECT COUNT(*) AS total FROM quizzes WHERE " + self.conditions(query, visibility: visibility, after: nil)
  }

  /// ` WHERE … ORDER BY …` without a limit, starting after `after`: for streaming exports
  /// that page through a cursor themselves.
  public static func cursorTail(_ query: ListQuery, visibility: QuizVisibility, after: KeysetPosition?, limit: Int) -> SQLQueryString {
    " WHERE " + self.conditions(query, visibility: visibility, after: after) + " ORDER BY " + self.orderBy(query.order)
      + " LIMIT \(bind: limit)"
  }

  static func conditions(_ query: ListQuery, visibility: QuizVisibility, after: KeysetPosition?) -> SQLQueryString {
    var parts: [SQLQueryString] = []
    switch visibility {
    case .publishedOnly: parts.append("state = \(bind: QuizState.published.rawValue)")
    case .publishedOrAuthoredBy(let user): parts.append("(state = \(bind: QuizState.published.rawValue) OR author_id = \(bind: user))")
    case .all: break
    }
    if !query.showDeleted { parts.append("deleted_time_ms IS NULL") }
    if let filter = query.filter { parts.append(self.compile(filter)) }
    if let after { parts.append(self.keyset(after, order: query.order)) }
    return parts.isEmpty ? "1 = 1" : parts.joined(separator: " AND ")
  }

  /// The filter as a parenthesized condition. Recursion is bounded by the parser's depth
  /// limit (32).
  static func compile(_ filter: QuizFilter) -> SQLQueryString {
    switch filter {
    case .predicate(let p): self.predicate(p)
    case .and(let parts): "(" + parts.map { self.compile($0) }.joined(separator: " AND ") + ")"
    case .or(let parts): "(" + parts.map { self.compile($0) }.joined(separator: " OR ") + ")"
    case .not(let inner): "(NOT " + self.compile(inner) + ")"
    }
  }

  static func predicate(_ predicate: QuizPredicate) -> SQLQueryString {
    switch predicate {
    case .state(let state, let equal):
      equal ? "state = \(bind: state.rawValue)" : "state <> \(bind: state.rawValue)"
    case .tag(let tag):
      "EXISTS (SELECT 1 FROM quiz_tags WHERE quiz_tags.quiz_id = quizzes.id AND quiz_tags.tag = \(bind: tag))"
    case .author(let author, let equal):
      equal ? "author_id = \(bind: author)" : "author_id <> \(bind: author)"
    case .time(let field, let op, let ms):
      self.column(field) + " " + self.op(op) + " \(bind: ms)"
    case .titleContains(let text):
      "lower(title) LIKE lower(\(bind: "%" + self.escapeLike(text) + "%")) ESCAPE '\\'"
    case .titleEquals(let text):
      "title = \(bind: text)"
    }
  }

  /// `%`, `_` and the escape character itself, escaped with `\`.
  static func escapeLike(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for c in text.unicodeScalars {
      if c == "\\" || c == "%" || c == "_" { out.unicodeScalars.append("\\") }
      out.unicodeScalars.append(c)
    }
    return out
  }

  /// Rows strictly after `position` in `order` (+ id), for any mix of directions:
  /// `k1 ≷ v1 OR (k1 = v1 AND k2 ≷ v2) OR … OR (k1 = v1 AND … AND id ≷ last_id)`, behind a
  /// redundant `k1 ≥/≤ v1` so both planners see a range on the index's first column.
  static func keyset(_ position: KeysetPosition, order: QuizOrder) -> SQLQueryString {
    let columns: [SQLQueryString] = order.keys.map { self.column($0.field) } + ["id"]
    let descending = order.keys.map(\.descending) + [order.idDescending]
    let values: [KeysetValue] = position.values + [.text(position.id)]
    var alternatives: [SQLQueryString] = []
    for i in columns.indices {
      var terms: [SQLQueryString] = (0..<i).map { columns[$0] + " = " + self.bind(values[$0]) }
      terms.append(columns[i] + (descending[i] ? " < " : " > ") + self.bind(values[i]))
      alternatives.append("(" + terms.joined(separator: " AND ") + ")")
    }
    let lead: SQLQueryString = columns[0] + (descending[0] ? " <= " : " >= ") + self.bind(values[0])
    return "(" + lead + " AND (" + alternatives.joined(separator: " OR ") + "))"
  }

  static func orderBy(_ order: QuizOrder) -> SQLQueryString {
    let keys = order.keys.map { self.column($0.field) + ($0.descending ? " DESC" : " ASC") }
    return (keys + [order.idDescending ? "id DESC" : "id ASC"]).joined(separator: ", ")
  }

  static func bind(_ value: KeysetValue) -> SQLQueryString {
    switch value {
    case .int(let v): "\(bind: v)"
    case .text(let v): "\(bind: v)"
    }
  }

  static func column(_ field: QuizOrder.Field) -> SQLQueryString {
    switch field {
    case .createTime: "create_time_ms"
    case .updateTime: "update_time_ms"
    case .title: "title"
    }
  }

  static func column(_ field: QuizTimeField) -> SQLQueryString {
    switch field {
    case .createTime: "create_time_ms"
    case .updateTime: "update_time_ms"
    }
  }

  static func op(_ op: QuizComparison) -> SQLQueryString {
    switch op {
    case .equal: "="
    case .notEqual: "<>"
    case .less: "<"
    case .lessOrEqual: "<="
    case .greater: ">"
    case .greaterOrEqual: ">="
    }
  }
}
