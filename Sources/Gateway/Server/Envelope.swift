import Foundation

/// The body of every gateway response: `{"data": …, "meta": {…}}` or `{"error": …, "meta": …}`
/// — never both. `data` is the message in protobuf's canonical JSON, spliced in as the
/// encoder produced it (no second decode/encode round trip).
public struct Envelope: Sendable {
  /// `meta.pagination` of a list.
  public struct Pagination: Sendable, Hashable {
    /// Empty on the last page (sent as `null`).
    public var nextCursor: String
    public var limit: Int?
    public var total: Int?
  }

  /// Meta fields besides the request id and time.
  public struct Meta: Sendable {
    public var pagination: Pagination?
    /// Other fields of a list response (e.g. a leaderboard's `version`), as canonical JSON
    /// values by their JSON name.
    public var extra: [(name: String, json: String)] = []
    public init(pagination: Pagination? = nil) { self.pagination = pagination }
  }

  /// `{"data": <json>, "meta": …}`.
  public static func data(_ json: String, requestID: String, meta: Meta = Meta(), now: Date = Date()) -> Data {
    var out = #"{"data":"#
    out += json
    out += #","meta":"#
    out += Self.meta(meta, requestID: requestID, now: now)
    out += "}"
    return Data(out.utf8)
  }

  /// `{"error": …, "meta": …}`.
  public static func error(_ error: APIError, requestID: String, now: Date = Date()) -> Data {
    let object: [String: Any] = ["error": error.jsonObject]
    let errorJSON = Self.serialize(object)
    // Splice meta in so it is built by the same code as on success.
    var out = String(errorJSON.dropLast())
    out += #","meta":"# + Self.meta(Meta(), requestID: requestID, now: now) + "}"
    return Data(out.utf8)
  }

  static func meta(_ meta: Meta, requestID: String, now: Date) -> String {
    var object: [String: Any] = ["request_id": requestID, "timestamp": Self.timestamp(now)]
    if let pagination = meta.pagination {
      var page: [String: Any] = ["next_cursor": pagination.nextCursor.isEmpty ? NSNull() : pagination.nextCursor]
      if let limit = pagination.limit { page["limit"] = limit }
      if let total = pagination.total { page["total"] = total }
      object["pagination"] = page
    }
    var json = Self.serialize(object)
    for (name, value) in meta.extra {
      json = String(json.dropLast()) + "," + Self.serialize(name) + ":" + value + "}"
    }
    return json
  }

  /// RFC 3339 UTC with milliseconds.
  public static func timestamp(_ date: Date) -> String {
    date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
  }

  static func serialize(_ value: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("null".utf8)
    return String(decoding: data, as: UTF8.self)
  }
}
