/// Why a list request's `filter`, `order_by`, `page_token`, `page_size`, `offset` or
/// `read_mask` was refused. Every case is the caller's mistake: INVALID_ARGUMENT with a
/// `google.rpc.BadRequest` field violation on `field` (see `QuizQueryError+RPC.swift`).
public struct QuizQueryError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The request field at fault: "filter", "order_by", "page_token", "page_size", "offset", "read_mask".
  public var field: String
  /// What is wrong, for people ("unknown field \"colour\"; fields: …").
  public var reason: String
  /// For `filter` and `order_by`: the 1-based character position where the problem starts.
  public var position: Int?

  public init(field: String, reason: String, position: Int? = nil) {
    self.field = field
    self.reason = reason
    self.position = position
  }

  /// "filter: at 14: unknown field \"colour\"; …", the text the caller reads.
  public var description: String {
    if let position { return "\(self.field): at \(position): \(self.reason)" }
    return "\(self.field): \(self.reason)"
  }

  static func filter(_ reason: String, at position: Int? = nil) -> Self { Self(field: "filter", reason: reason, position: position) }
  static func orderBy(_ reason: String, at position: Int? = nil) -> Self { Self(field: "order_by", reason: reason, position: position) }
}
