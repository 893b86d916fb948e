/// A parsed `order_by` (AIP-132): `"create_time desc, title"`. Fields: create_time,
/// update_time, title, each at most once; `id` is always the implicit last key (in the
/// direction of the last listed field, so one index scan serves the whole order), which
/// makes every order total — what keyset paging needs. Default: `create_time desc`.
public struct QuizOrder: Sendable, Hashable {
  public enum Field: String, Sendable, Hashable, CaseIterable {
    case createTime = "create_time", updateTime = "update_time", title
  }

  public struct Key: Sendable, Hashable {
    public var field: Field
    public var descending: Bool
    public init(_ field: Field, descending: Bool) {
      self.field = field
      self.descending = descending
    }
  }

  /// The listed keys, without the implicit `id`.
  public let keys: [Key]

  public static let `default` = QuizOrder(keys: [Key(.createTime, descending: true)])

  init(keys: [Key]) { self.keys = keys }

  /// The direction of the implicit `id` tie-breaker.
  public var idDescending: Bool { self.keys.last?.descending ?? true }

  /// `create_time desc, title asc`: one spelling per order, for page-token fingerprints.
  public var canonical: String {
    self.keys.map { "\($0.field.rawValue) \($0.descending ? "desc" : "asc")" }.joined(separator: ", ")
  }

  /// Parses `order_by`; blank means the default.
  public static func parse(_ text: String) throws(QuizQueryError) -> QuizOrder {
    guard text.unicodeScalars.count <= 200 else { throw .orderBy("longer than 200 characters") }
    if text.allSatisfy({ $0 == " " }) { return .default }
    var keys: [Key] = []
    var offset = 1
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
      defer { offset += part.count + 1 }
      let words = part.split(separator: " ")
      guard let name = words.first else { throw .orderBy("empty item", at: offset) }
      guard let field = Field(rawValue: String(name)) else {
        throw .orderBy(
          "cannot order by \"\(name)\" (fields: \(Field.allCases.map(\.rawValue).joined(separator: ", ")); id is always the last key)", at: offset)
      }
      guard !keys.contains(where: { $0.field == field }) else { throw .orderBy("\(field.rawValue) listed twice", at: offset) }
      var descending = false
      switch words.count {
      case 1: break
      case 2:
        switch words[1] {
        case "desc": descending = true
        case "asc": descending = false
        default: throw .orderBy("expected asc or desc after \(field.rawValue), found \"\(words[1])\"", at: offset)
        }
      default: throw .orderBy("expected \"field [asc|desc]\", found \"\(part)\"", at: offset)
      }
      keys.append(Key(field, descending: descending))
    }
    return QuizOrder(keys: keys)
  }
}
