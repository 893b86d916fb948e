/// Every rule of a `ListQuizzes` (or `ExportQuizzes`) request in one value
/// (AIP-132/158/160): the handler builds it from the request and the caller's scope, the
/// repository runs `QuizQuerySQL.pageTail` behind its SELECT, and the handler turns the
/// rows back into a page with `page(of:sortKey:)`.
///
/// - `page_size`: default 20, larger than 100 is clamped, negative is INVALID_ARGUMENT.
/// - `page_token`: see `PageTokenCodec`; bound to the filter, order, `show_deleted` and scope.
/// - `offset`: for clients that want page numbers; at most 10,000 (deeper pages cost a scan
///   of everything before them: use the token); with a `page_token` it is INVALID_ARGUMENT.
/// - `read_mask`: see `QuizReadMask`.
public struct ListQuery: Sendable {
  public static let defaultPageSize = 20
  public static let maxPageSize = 100
  public static let maxOffset = 10_000

  public let filter: QuizFilter?
  public let order: QuizOrder
  public let pageSize: Int
  public let offset: Int
  /// Where the previous page ended; nil on the first page.
  public let after: KeysetPosition?
  public let readMask: QuizReadMask
  public let showDeleted: Bool
  /// What page tokens of this query are bound to.
  public let fingerprint: String
  private let tokens: PageTokenCodec

  /// Checks and parses the request's list fields; the first problem is thrown.
  /// - Parameters:
  ///   - scope: the caller's read scope ("anonymous", "user:<id>", "admin"): a token is only
  ///     accepted from a caller with the scope it was issued to.
  public init(
    filter: String, orderBy: String, pageSize: Int32, pageToken: String, offset: Int32, readMask: [String],
    showDeleted: Bool = false, scope: String, tokens: PageTokenCodec
  ) throws(QuizQueryError) {
    guard pageSize >= 0 else { throw QuizQueryError(field: "page_size", reason: "must not be negative") }
    guard offset >= 0 else { throw QuizQueryError(field: "offset", reason: "must not be negative") }
    guard offset <= Self.maxOffset else {
      throw QuizQueryError(field: "offset", reason: "at most \(Self.maxOffset); page further with page_token")
    }
    guard offset == 0 || pageToken.isEmpty else {
      throw QuizQueryError(field: "offset", reason: "give either offset or page_token, not both")
    }
    self.filter = try QuizFilterParser.parse(filter)
    self.order = try QuizOrder.parse(orderBy)
    self.readMask = try QuizReadMask.parse(readMask)
    self.pageSize = pageSize == 0 ? Self.defaultPageSize : min(Int(pageSize), Self.maxPageSize)
    self.offset = Int(offset)
    self.showDeleted = showDeleted
    self.tokens = tokens
    self.fingerprint = PageTokenCodec.fingerprint(filter: self.filter, order: self.order, showDeleted: showDeleted, scope: scope)
    self.after = pageToken.isEmpty ? nil : try tokens.decode(pageToken, fingerprint: self.fingerprint, order: self.order)
  }

  /// How many rows to fetch: one more than a page, so a full page knows whether another follows.
  public var fetchLimit: Int { self.pageSize + 1 }

  /// The page out of up to `fetchLimit` fetched rows, and the token for the next page
  /// ("" when this is the last one).
  public func page<Row>(of rows: [Row], sortKey: (Row) -> QuizSortKey) -> (rows: [Row], nextPageToken: String) {
    guard rows.count > self.pageSize, self.pageSize > 0 else { return (rows, "") }
    let page = Array(rows.prefix(self.pageSize))
    return (page, self.nextPageToken(after: sortKey(page[page.count - 1])))
  }

  /// The token that continues after `row`.
  public func nextPageToken(after row: QuizSortKey) -> String {
    self.tokens.encode(row.position(in: self.order), fingerprint: self.fingerprint)
  }

  /// The page's cache key: the query in canonical form (filter, order, position, size,
  /// offset, mask). Meaningful only together with the scope it was computed for — the
  /// quiz cache stores anonymous-scope pages only.
  public var cacheKey: String {
    let position = self.after.map { "\($0.values)|\($0.id)" } ?? "first"
    return [
      self.filter?.canonical ?? "", self.order.canonical, self.showDeleted ? "deleted" : "live", position, "\(self.pageSize)", "\(self.offset)",
      self.readMask.canonical,
    ].joined(separator: "\n")
  }
}
