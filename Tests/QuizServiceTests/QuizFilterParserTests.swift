import GRPCCore
import GRPCProtobuf
import XCTest

@testable import QuizService

/// The filter grammar, its whitelist and limits, and hostile input: every refusal is a
/// `QuizQueryError` on `filter` naming the position, never a crash.
final class QuizFilterParserTests: XCTestCase {
  private func parse(_ text: String) throws -> QuizFilter? { try QuizFilterParser.parse(text) }

  private func refusal(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> QuizQueryError? {
    do throws(QuizQueryError) {
      let filter = try QuizFilterParser.parse(text)
      XCTFail("accepted \(text.prefix(80)): \(String(describing: filter))", file: file, line: line)
      return nil
    } catch {
      XCTAssertEqual(error.field, "filter", file: file, line: line)
      return error
    }
  }

  func testTheIssueExample() throws {
    let filter = try parse(#"state = "PUBLISHED" AND tag = "swift" AND create_time > "2026-01-01T00:00:00Z""#)
    XCTAssertEqual(
      filter,
      .and([.predicate(.state(.published, equal: true)), .predicate(.tag("swift")), .predicate(.time(.createTime, .greater, epochMs: 1_767_225_600_000))]))
  }

  func testEveryFieldAndOperator() throws {
    XCTAssertEqual(try parse("state != DRAFT"), .predicate(.state(.draft, equal: false)))
    XCTAssertEqual(try parse("state = QUIZ_STATE_ARCHIVED"), .predicate(.state(.archived, equal: true)))
    XCTAssertEqual(try parse("tag : swift"), .predicate(.tag("swift")))
    XCTAssertEqual(try parse("author_id = 'u-1'"), .predicate(.author("u-1", equal: true)))
    XCTAssertEqual(try parse("author_id != u-1"), .predicate(.author("u-1", equal: false)))
    XCTAssertEqual(try parse(#"title : "Swift""#), .predicate(.titleContains("Swift")))
    XCTAssertEqual(try parse(#"title = "Swift basics""#), .predicate(.titleEquals("Swift basics")))
    for (op, comparison) in [("=", QuizComparison.equal), ("!=", .notEqual), ("<", .less), ("<=", .lessOrEqual), (">", .greater), (">=", .greaterOrEqual)] {
      XCTAssertEqual(
        try parse(#"update_time \#(op) "2026-01-01T00:00:00.250+01:00""#), .predicate(.time(.updateTime, comparison, epochMs: 1_767_222_000_250)))
    }
  }

  func testPrecedenceNotAndParentheses() throws {
    // AND binds tighter than OR; NOT tighter than both.
    XCTAssertEqual(
      try parse("tag = a OR tag = b AND NOT tag = c"),
      .or([.predicate(.tag("a")), .and([.predicate(.tag("b")), .not(.predicate(.tag("c")))])]))
    XCTAssertEqual(
      try parse("(tag = a OR tag = b) AND tag = c"), .and([.or([.predicate(.tag("a")), .predicate(.tag("b"))]), .predicate(.tag("c"))]))
  }

  func testEscapesAndCanonicalForm() throws {
    XCTAssertEqual(try parse(#"title : "say \"hi\" \\ o'k""#), .predicate(.titleContains(#"say "hi" \ o'k"#)))
    XCTAssertEqual(try parse(#"title : 'it\'s'"#), .predicate(.titleContains("it's")))
    // One spelling per meaning: page tokens are bound to this.
    XCTAssertEqual(try parse("state=PUBLISHED AND tag='x'")?.canonical, try parse(#"state = "PUBLISHED"   AND  tag = "x""#)?.canonical)
    XCTAssertNotEqual(try parse("tag = x")?.canonical, try parse("tag = y")?.canonical)
    XCTAssertNil(try parse("   "))
  }

  func testErrorsSayWhereAndWhat() throws {
    let unknown = refusal("state = DRAFT AND colour = red")
    XCTAssertEqual(unknown?.position, 19)
    XCTAssertTrue(unknown?.reason.contains("unknown field \"colour\"") ?? false, unknown?.description ?? "")
    XCTAssertEqual(refusal("title > a")?.position, 1)
    XCTAssertEqual(refusal("state = PUBLISH")?.position, 9)
    XCTAssertEqual(refusal("tag != x")?.reason.contains("does not take \"!=\""), true)
    XCTAssertEqual(refusal(#"create_time > "yesterday""#)?.position, 15)
    XCTAssertNotNil(refusal(#"create_time > "2026-01-01T00:00:00""#), "a time without a zone")
    XCTAssertEqual(refusal("tag = a AND")?.reason.contains("expected a field name"), true)
    XCTAssertEqual(refusal("tag = a b")?.position, 9)
    XCTAssertEqual(refusal("tag = a and tag = b")?.position, 9, "keywords are upper case")
    XCTAssertNotNil(refusal("tag ! a"))
    XCTAssertNotNil(refusal("tag = ;"))
  }

  func testHostileInputIsRefusedNotCrashing() throws {
    XCTAssertEqual(refusal(#"title : "unterminated"#)?.reason, "unterminated string")
    XCTAssertEqual(refusal(#"title : 'a"#)?.position, 9)
    XCTAssertNotNil(refusal(#"title : "a\"#))
    XCTAssertNotNil(refusal(#"title : "\n""#), "unknown escape")
    XCTAssertNotNil(refusal("title : \"a\u{0}b\""), "NUL")
    XCTAssertNotNil(refusal("tag = a\u{7}"), "control character")
    XCTAssertNotNil(refusal("(tag = a"))
    XCTAssertNotNil(refusal("tag = a)"))
    XCTAssertNotNil(refusal(")("))
    // 10,000 nested parentheses: refused by length before anything is parsed.
    let deep = String(repeating: "(", count: 10_000) + "tag = a" + String(repeating: ")", count: 10_000)
    XCTAssertEqual(refusal(deep)?.reason.contains("longer than 2000"), true)
    // Deep but short: refused at level 33, without recursing any deeper.
    let nested = String(repeating: "(", count: 990) + "tag=a" + String(repeating: ")", count: 990)
    let tooDeep = refusal(nested)
    XCTAssertEqual(tooDeep?.position, 33)
    XCTAssertEqual(tooDeep?.reason, "nested deeper than 32 levels")
    XCTAssertNotNil(refusal(String(repeating: "NOT ", count: 490) + "tag = a"))
    XCTAssertNotNil(refusal(String(repeating: "(", count: 1990)))
  }

  func testLimits() throws {
    let ok32 = String(repeating: "(", count: 32) + "tag = a" + String(repeating: ")", count: 32)
    XCTAssertNotNil(try parse(ok32))
    XCTAssertNotNil(refusal(String(repeating: "(", count: 33) + "tag = a" + String(repeating: ")", count: 33)))
    let fifty = (0..<50).map { "tag = t\($0)" }.joined(separator: " OR ")
    XCTAssertNotNil(try parse(fifty))
    let fiftyOne = (0..<51).map { "tag = t\($0)" }.joined(separator: " OR ")
    XCTAssertEqual(refusal(fiftyOne)?.reason, "more than 50 terms")
    let long = "title : \"" + String(repeating: "a", count: 1990) + "\""
    XCTAssertEqual(refusal(long)?.reason.contains("longer than 256"), true)
    XCTAssertNotNil(refusal(String(repeating: " ", count: 2001)))
  }

  /// SQL in a value is a value: parsed as a plain string (compiled as a bound parameter;
  /// `QuizQuerySQLTests` runs such values against a real table).
  func testSQLFragmentsStayValues() throws {
    XCTAssertEqual(try parse(#"title : "'; DROP TABLE quizzes; --""#), .predicate(.titleContains("'; DROP TABLE quizzes; --")))
    XCTAssertEqual(try parse(#"tag = "x' OR '1'='1""#), .predicate(.tag("x' OR '1'='1")))
  }

  func testRefusalIsInvalidArgumentWithABadRequestOnFilter() throws {
    let error = try XCTUnwrap(refusal("tag = a AND colour = b"))
    let rpc = RPCError(error)
    XCTAssertEqual(rpc.code, .invalidArgument)
    XCTAssertTrue(rpc.message.contains("filter: at 13: unknown field"), rpc.message)
    let violation = try XCTUnwrap(try rpc.unpackGoogleRPCStatus()?.details.first?.badRequest?.violations.first)
    XCTAssertEqual(violation.field, "filter")
    XCTAssertTrue(violation.violationDescription.hasPrefix("at 13: unknown field"), violation.violationDescription)
  }
}
