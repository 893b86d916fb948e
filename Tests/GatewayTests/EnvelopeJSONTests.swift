import Foundation
import XCTest

@testable import Gateway

/// The hand-built parts of every response (meta, timestamps, the top-level field scan) against
/// Foundation's JSON and date formatting.
final class EnvelopeJSONTests: XCTestCase {
  func testTimestampMatchesFoundationsRFC3339() {
    let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<2000 {
      let date = Date(timeIntervalSince1970: Double(UInt64.random(in: 0...4_102_444_800_000, using: &generator)) / 1000)
      XCTAssertEqual(Envelope.timestamp(date), date.formatted(style))
    }
  }

  func testMetaIsValidJSONWithEveryField() throws {
    var meta = Envelope.Meta(pagination: .init(nextCursor: "abc\"d\\e", limit: 20, total: 7))
    meta.extra.append((name: "version", json: "\"42\""))
    let json = Envelope.meta(meta, requestID: "req-1", now: Date(timeIntervalSince1970: 0))
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    XCTAssertEqual(object["request_id"] as? String, "req-1")
    XCTAssertEqual(object["timestamp"] as? String, "1970-01-01T00:00:00.000Z")
    XCTAssertEqual(object["version"] as? String, "42")
    let page = try XCTUnwrap(object["pagination"] as? [String: Any])
    XCTAssertEqual(page["next_cursor"] as? String, "abc\"d\\e")
    XCTAssertEqual(page["limit"] as? Int, 20)
    XCTAssertEqual(page["total"] as? Int, 7)

    let last = Envelope.meta(Envelope.Meta(pagination: .init(nextCursor: "", limit: nil, total: nil)), requestID: "r", now: Date())
    let lastPage = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])?["pagination"] as? [String: Any])
    XCTAssertTrue(lastPage["next_cursor"] is NSNull)
    XCTAssertEqual(lastPage.count, 1)
  }

  func testTopLevelScanFindsOnlyTopLevelStrings() {
    let json = #"""
      {"nested": {"id": "inner", "list": [{"etag": "x"}, "}", "]"]}, "title": "a \"quoted\" {brace}",
       "count": 12, "flag": true, "none": null, "id": "qz_1", "etag": "e\"1\u00e9", "state": "QUIZ_STATE_PUBLISHED"}
      """#
    let found = TopLevelJSON.strings(json, keys: ["id", "etag", "state", "count"])
    XCTAssertEqual(found["id"], "qz_1")
    XCTAssertEqual(found["etag"], "e\"1é")
    XCTAssertEqual(found["state"], "QUIZ_STATE_PUBLISHED")
    XCTAssertNil(found["count"], "only string values are read")
    XCTAssertEqual(TopLevelJSON.strings("[1,2]", keys: ["id"]), [:])
    XCTAssertEqual(TopLevelJSON.strings(#"{"id": "#, keys: ["id"]), [:])
  }

  /// The hand-written error body says exactly what Foundation's serializer said, escapes and
  /// all, for every kind of detail.
  func testErrorBodyMatchesJSONSerialization() throws {
    let tricky = "quote \" backslash \\ slash / newline \n tab \t bell \u{07} nul \u{00} é 😀 \u{7F}"
    var errors: [APIError] = [
      .gateway(404, "no route for GET /x"),
      .gateway(400, tricky, violations: [.init(field: "title", description: tricky), .init(field: "questions[0].choices", description: "b")]),
      APIError(httpStatus: 429, status: "RESOURCE_EXHAUSTED", message: "slow down", details: [.retryInfo(.milliseconds(1500))]),
      APIError(httpStatus: 429, status: "RESOURCE_EXHAUSTED", message: "later", details: [.retryInfo(.seconds(2))]),
    ]
    var info = APIError(
      httpStatus: 422, status: "FAILED_PRECONDITION", message: tricky,
      details: [.errorInfo(reason: "QUIZ_NOT_PUBLISHABLE", domain: "quiz.quizwire", metadata: ["z": tricky, "a": "1"])])
    info.reason = "QUIZ_NOT_PUBLISHABLE"
    errors.append(info)
    for error in errors {
      let body = Envelope.error(error, requestID: "req-\u{01}", now: Date(timeIntervalSince1970: 0))
      let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: body) as? [String: Any], String(decoding: body, as: UTF8.self))
      XCTAssertEqual(object["error"] as? NSDictionary, error.jsonObject as NSDictionary)
      XCTAssertEqual((object["meta"] as? [String: Any])?["request_id"] as? String, "req-\u{01}")
      // Byte for byte what `JSONSerialization` (sorted keys, slashes as they are) writes.
      XCTAssertEqual(error.json, Envelope.serialize(error.jsonObject))
    }
  }
}
