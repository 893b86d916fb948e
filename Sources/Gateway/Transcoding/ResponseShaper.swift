import Foundation
import SwiftProtobuf

/// Turns a response message into the envelope's `data` and `meta`: protobuf's canonical JSON
/// (lowerCamelCase, int64 as strings, enums as names, RFC 3339 times); a list response (one
/// repeated field, and a `next_page_token` or nothing else) becomes the array itself, its
/// paging in `meta.pagination`.
struct ResponseShaper {
  let schema: MessageSchema

  struct Shaped {
    var json: String
    var meta: Envelope.Meta
    /// The resource's `id`, for `Location` on a create.
    var id: String?
    /// The resource's `etag`, for `ETag` and `If-None-Match`.
    var etag: String?
    /// The resource's lifecycle `state` enum name ("QUIZ_STATE_PUBLISHED"), for `Cache-Control`.
    var state: String? = nil
  }

  func shape(_ message: any SwiftProtobuf.Message, requestedLimit: Int?) throws -> Shaped {
    let json = try message.jsonString()
    let fields = self.schema.fields(of: type(of: message).protoMessageName) ?? []
    let repeated = fields.filter(\.isRepeated)
    let paged = fields.contains { $0.name == "next_page_token" }
    guard repeated.count == 1, paged || fields.count == 1 else {
      let object = fields.contains { Self.headerFields.contains($0.name) } ? TopLevelJSON.strings(json, keys: Self.headerFields) : [:]
      return Shaped(json: json, meta: Envelope.Meta(), id: object["id"], etag: object["etag"], state: object["state"])
    }
    // A list: split the one object into the array and its paging. Only the outer object is
    // re-serialized; the elements keep protobuf's JSON forms (int64s stay strings).
    let object = Self.object(json) ?? [:]
    let list = object[repeated[0].jsonName] ?? [Any]()
    var meta = Envelope.Meta(
      pagination: paged
        ? .init(nextCursor: object["nextPageToken"] as? String ?? "", limit: requestedLimit, total: (object["totalSize"] as? NSNumber)?.intValue)
        : nil)
    for (key, value) in object.sorted(by: { $0.key < $1.key }) where ![repeated[0].jsonName, "nextPageToken", "totalSize"].contains(key) {
      meta.extra.append((name: key, json: Envelope.serialize(value)))
    }
    return Shaped(json: Envelope.serialize(list), meta: meta, id: nil, etag: nil)
  }

  /// What a single resource's headers are made of (`Location`, `ETag`, `Cache-Control`).
  private static let headerFields: Set<String> = ["id", "etag", "state"]

  private static func object(_ json: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
  }
}
