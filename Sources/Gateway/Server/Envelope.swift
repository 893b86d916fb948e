import Foundation
import ServiceKit

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
  /// Built by hand like `meta` (keys sorted, as `JSONSerialization` would): refusals — 404,
  /// 413, 429 floods — are the answers a hostile client asks for most, and Foundation's
  /// serializer made one cost about 60 µs.
  public static func error(_ error: APIError, requestID: String, now: Date = Date()) -> Data {
    var out = #"{"error":"# + error.json
    out += #","meta":"# + Self.meta(Meta(), requestID: requestID, now: now) + "}"
    return Data(out.utf8)
  }

  /// Built by hand: it is on every response, and `JSONSerialization` plus Foundation's date
  /// formatter cost more than the rest of a cached read. Keys in sorted order, as before.
  static func meta(_ meta: Meta, requestID: String, now: Date) -> String {
    var json = "{"
    if let pagination = meta.pagination {
      var page = ""
      if let limit = pagination.limit { page += #""limit":\#(limit),"# }
      page += #""next_cursor":"# + (pagination.nextCursor.isEmpty ? "null" : Self.quoted(pagination.nextCursor))
      if let total = pagination.total { page += #","total":\#(total)"# }
      json += #""pagination":{"# + page + "},"
    }
    json += #""request_id":"# + Self.quoted(requestID) + #","timestamp":""# + Self.timestamp(now) + "\""
    for (name, value) in meta.extra { json += "," + Self.quoted(name) + ":" + value }
    return json + "}"
  }

  /// RFC 3339 UTC with milliseconds ("2026-11-30T20:58:39.123Z").
  public static func timestamp(_ date: Date) -> String {
    // From the reference date, as Foundation's formatter does, so both print the same digits.
    let reference = date.timeIntervalSinceReferenceDate
    let whole = reference.rounded(.down)
    let millis = min(999, Int32((reference - whole) * 1000))
    var seconds = time_t(Int64(whole) + 978_307_200)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ value: Int32, _ width: Int) -> String {
      let text = String(value)
      return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    return pad(parts.tm_year + 1900, 4) + "-" + pad(parts.tm_mon + 1, 2) + "-" + pad(parts.tm_mday, 2) + "T" + pad(parts.tm_hour, 2) + ":"
      + pad(parts.tm_min, 2) + ":" + pad(parts.tm_sec, 2) + "." + pad(millis, 3) + "Z"
  }

  /// A JSON string literal for `text` (`JSONText.quoted`).
  static func quoted(_ text: String) -> String { JSONText.quoted(text) }

  static func serialize(_ value: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("null".utf8)
    return String(decoding: data, as: UTF8.self)
  }
}
