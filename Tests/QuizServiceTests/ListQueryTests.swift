import Foundation
import XCTest

@testable import QuizService

/// `order_by`, page sizes, offsets, read masks and page tokens: the list request's rules.
final class ListQueryTests: XCTestCase {
  private let codec = try! PageTokenCodec(secret: "test page token secret, 32 bytes!")

  private func query(
    filter: String = "", orderBy: String = "", pageSize: Int32 = 0, token: String = "", offset: Int32 = 0, mask: [String] = [],
    showDeleted: Bool = false, scope: String = "anonymous", codec: PageTokenCodec? = nil
  ) throws(QuizQueryError) -> ListQuery {
    try ListQuery(
      filter: filter, orderBy: orderBy, pageSize: pageSize, pageToken: token, offset: offset, readMask: mask, showDeleted: showDeleted,
      scope: scope, tokens: codec ?? self.codec)
  }

  private func refused(_ make: () throws(QuizQueryError) -> ListQuery, field: String, file: StaticString = #filePath, line: UInt = #line) {
    do throws(QuizQueryError) {
      _ = try make()
      XCTFail("accepted", file: file, line: line)
    } catch {
      XCTAssertEqual(error.field, field, error.description, file: file, line: line)
    }
  }

  private func record(_ id: String, created: Int64, title: String = "t") -> QuizSortKey {
    QuizSortKey(id: id, createTimeMs: created, updateTimeMs: created, title: title)
  }

  func testOrderBy() throws {
    XCTAssertEqual(try QuizOrder.parse(""), .default)
    XCTAssertEqual(QuizOrder.default.canonical, "create_time desc")
    let order = try QuizOrder.parse("create_time desc, title")
    XCTAssertEqual(order.keys, [.init(.createTime, descending: true), .init(.title, descending: false)])
    XCTAssertFalse(order.idDescending, "id follows the last key's direction")
    XCTAssertEqual(try QuizOrder.parse("  update_time   asc ").canonical, "update_time asc")
    for bad in ["id", "title desc, title", "title sideways", "title desc x", "create_time,", "colour"] {
      XCTAssertThrowsError(try QuizOrder.parse(bad), bad) { XCTAssertEqual(($0 as? QuizQueryError)?.field, "order_by") }
    }
    do throws(QuizQueryError) {
      _ = try QuizOrder.parse("title, colour")
      XCTFail("accepted")
    } catch {
      XCTAssertEqual(error.position, 7)
      XCTAssertTrue(error.reason.contains("cannot order by \"colour\""), error.reason)
    }
  }

  func testPageSizeOffsetAndMask() throws {
    XCTAssertEqual(try query().pageSize, 20)
    XCTAssertEqual(try query(pageSize: 7).pageSize, 7)
    XCTAssertEqual(try query(pageSize: 5000).pageSize, 100, "clamped")
    XCTAssertEqual(try query(pageSize: 5).fetchLimit, 6)
    refused({ () throws(QuizQueryError) in try query(pageSize: -1) }, field: "page_size")
    refused({ () throws(QuizQueryError) in try query(offset: -1) }, field: "offset")
    XCTAssertEqual(try query(offset: 10_000).offset, 10_000)
    refused({ () throws(QuizQueryError) in try query(offset: 10_001) }, field: "offset")
    let first = try query(pageSize: 1)
    let token = first.nextPageToken(after: record("q1", created: 5))
    refused({ () throws(QuizQueryError) in try query(pageSize: 1, token: token, offset: 3) }, field: "offset")
    refused({ () throws(QuizQueryError) in try query(mask: ["id", "colour"]) }, field: "read_mask")
    let narrow = try query(mask: ["id,title"])
    XCTAssertFalse(narrow.readMask.needsQuestions)
    XCTAssertFalse(narrow.readMask.needsTags)
    XCTAssertEqual(narrow.readMask.canonical, "id,title")
    XCTAssertTrue(try query().readMask.needsQuestions)
    XCTAssertEqual(try query(mask: ["questionTimeLimitSeconds"]).readMask.canonical, "question_time_limit_seconds")
    refused({ () throws(QuizQueryError) in try query(filter: "colour = red") }, field: "filter")
    refused({ () throws(QuizQueryError) in try query(orderBy: "colour") }, field: "order_by")
  }

  func testPageOfRowsAndTokenRoundTrip() throws {
    let q = try query(orderBy: "create_time desc, title", pageSize: 2)
    let rows = [record("q3", created: 30, title: "c"), record("q2", created: 20, title: "b"), record("q1", created: 10, title: "a")]
    let (page, next) = q.page(of: rows) { $0 }
    XCTAssertEqual(page.map(\.id), ["q3", "q2"])
    XCTAssertFalse(next.isEmpty)
    XCTAssertEqual(q.page(of: Array(rows.prefix(2))) { $0 }.nextPageToken, "", "no row beyond the page: last page")
    let continued = try query(orderBy: "create_time desc, title", pageSize: 2, token: next)
    XCTAssertEqual(continued.after, KeysetPosition(values: [.int(20), .text("b")], id: "q2"))
    XCTAssertEqual(record("q2", created: 20, title: "b").position(in: q.order), continued.after)
    XCTAssertTrue(next.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }, "base64url, no padding")
  }

  func testTamperedTruncatedForeignAndReusedTokensAreRefused() throws {
    let q = try query(filter: "tag = swift", pageSize: 1)
    let token = q.nextPageToken(after: record("q1", created: 5))
    XCTAssertNoThrow(try query(filter: "tag = swift", pageSize: 1, token: token))
    XCTAssertNoThrow(try query(filter: "tag='swift'", pageSize: 1, token: token), "same filter, other spelling")
    // Every single-character change anywhere in the token is caught.
    var bytes = Array(token.utf8)
    for index in bytes.indices {
      let original = bytes[index]
      bytes[index] = original == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
      let tampered = String(decoding: bytes, as: UTF8.self)
      refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: tampered) }, field: "page_token")
      bytes[index] = original
    }
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: String(token.dropLast(3))) }, field: "page_token")
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: "!!") }, field: "page_token")
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: "AAAA") }, field: "page_token")
    // Signed with another key: another deployment's (or a forger's) token.
    let foreign = try PageTokenCodec(secret: "another deployment's secret key")
    let foreignToken = try query(filter: "tag = swift", codec: foreign).nextPageToken(after: record("q1", created: 5))
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: foreignToken) }, field: "page_token")
    // Reused with another filter, order or scope.
    refused({ () throws(QuizQueryError) in try query(filter: "tag = go", token: token) }, field: "page_token")
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", orderBy: "title", token: token) }, field: "page_token")
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: token, showDeleted: true) }, field: "page_token")
    refused({ () throws(QuizQueryError) in try query(filter: "tag = swift", token: token, scope: "user:u1") }, field: "page_token")
  }

  func testCacheKeySeparatesWhatDiffers() throws {
    let base = try query(filter: "tag = a").cacheKey
    XCTAssertEqual(base, try query(filter: "tag='a'").cacheKey)
    XCTAssertNotEqual(base, try query(filter: "tag = b").cacheKey)
    XCTAssertNotEqual(base, try query(filter: "tag = a", orderBy: "title").cacheKey)
    XCTAssertNotEqual(base, try query(filter: "tag = a", pageSize: 5).cacheKey)
    XCTAssertNotEqual(base, try query(filter: "tag = a", offset: 20).cacheKey)
    XCTAssertNotEqual(base, try query(filter: "tag = a", mask: ["id"]).cacheKey)
  }
}
