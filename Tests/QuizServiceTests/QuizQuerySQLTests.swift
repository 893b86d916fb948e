import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// The compiled filters, orders and keyset positions on real SQLite and PostgreSQL tables
/// (the quiz migrations' schema), compared with a reference evaluation in Swift.
final class QuizQuerySQLTests: XCTestCase {
  static let filters = [
    "", "state = PUBLISHED", "state != DRAFT", "tag = swift", "tag = go AND tag = sql", "NOT tag = swift", "author_id = bob",
    "author_id != bob", #"title : "SWIFT""#, #"title : "100%""#, #"title : "%""#, #"title : "_""#, #"title : "r_s""#, #"title : "\\""#,
    #"title : "'brien""#, #"title = "Rust""#, #"create_time > "2023-11-14T22:15:00Z""#, #"create_time <= "2023-11-14T22:15:00Z""#,
    #"update_time >= "2023-11-14T22:15:30Z" AND update_time < "2023-11-14T22:16:30Z""#,
    #"create_time = "2023-11-14T22:14:20Z" OR create_time = "2023-11-14T22:14:21Z""#,
    #"(state = PUBLISHED OR author_id = carol) AND NOT (tag = rust OR title : "go")"#,
    // SQL in values stays a value.
    #"title : "'; DROP TABLE quizzes; --""#, #"tag = "x' OR '1'='1""#, #"author_id = "bob' OR '1'='1""#, #"title = "Rust' --""#,
  ]

  func testEveryFilterSelectsExactlyTheReferenceRows() async throws {
    let rows = QueryFixture.rows(240)
    try await TestDatabases.each { db in
      try await QueryFixture.migrated(db)
      try await db.transaction { uow in try await QueryFixture.insert(rows, in: uow) }
      for text in Self.filters {
        for showDeleted in [false, true] {
          let query = try QueryFixture.query(text, pageSize: 100, showDeleted: showDeleted)
          let expected = rows.filter { (showDeleted || $0.deleted == nil) && (query.filter.map($0.matches) ?? true) }
          let walked = try await QueryFixture.walk(filter: text, pageSize: 100, in: db).sorted()
          let counted = try await db.read { uow in try await QuizRepository().count(QuizQuerySQL.count(query, visibility: .all), in: uow) }
          if !showDeleted {
            XCTAssertEqual(walked, expected.map(\.id).sorted(), "\(db.dialect): \(text)")
          }
          XCTAssertEqual(counted, expected.count, "\(db.dialect): count of \(text), show_deleted \(showDeleted)")
        }
      }
      XCTAssertGreaterThan(rows.filter { $0.tags.contains("x' OR '1'='1") }.count, 0, "the fixture has the odd tag")
      // Still there, all of it.
      let total = try await db.read { uow in try await QuizRepository().count("SELECT COUNT(*) AS total FROM quizzes", in: uow) }
      XCTAssertEqual(total, rows.count)
    }
  }

  func testVisibility() async throws {
    let rows = QueryFixture.rows(120)
    try await TestDatabases.each { db in
      try await QueryFixture.migrated(db)
      try await db.transaction { uow in try await QueryFixture.insert(rows, in: uow) }
      let live = rows.filter { $0.deleted == nil }
      let cases: [(QuizVisibility, [QueryRow])] = [
        (.all, live), (.publishedOnly, live.filter { $0.state == .published }),
        (.publishedOrAuthoredBy("bob"), live.filter { $0.state == .published || $0.author == "bob" }),
      ]
      for (visibility, expected) in cases {
        let walked = try await QueryFixture.walk(pageSize: 17, visibility: visibility, in: db)
        XCTAssertEqual(walked.sorted(), expected.map(\.id).sorted(), "\(db.dialect) \(visibility)")
      }
    }
  }

  /// Keyset pages, every order (mixed directions too), give exactly the one-query order.
  func testKeysetWalkEqualsTheFullOrderForEveryOrderBy() async throws {
    let rows = QueryFixture.rows(150)
    try await TestDatabases.each { db in
      try await QueryFixture.migrated(db)
      try await db.transaction { uow in try await QueryFixture.insert(rows, in: uow) }
      for order in ["", "create_time", "update_time desc", "title", "title desc", "create_time desc, title", "title, update_time desc"] {
        let parsed = try QuizOrder.parse(order)
        let full = try await db.read { uow in
          try await QuizRepository().list(tail: " WHERE deleted_time_ms IS NULL ORDER BY " + QuizQuerySQL.orderBy(parsed), load: .row, in: uow)
        }.map(\.id)
        for size: Int32 in [1, 7, 50] {
          let walked = try await QueryFixture.walk(orderBy: order, pageSize: size, in: db)
          XCTAssertEqual(walked, full, "\(db.dialect) order \(order) size \(size)")
        }
        XCTAssertEqual(Set(full).count, rows.filter { $0.deleted == nil }.count)
        // offset pages agree with the walk
        let third = try await QueryFixture.ids(try QueryFixture.query(orderBy: order, pageSize: 7, offset: 14), in: db).prefix(7).map(\.id)
        XCTAssertEqual(Array(third), Array(full[14..<21]), "\(db.dialect) offset, order \(order)")
      }
    }
  }

  /// A full walk while 1,000 rows are inserted concurrently, around and between the pages
  /// (tied timestamps included): no row twice, and every row that existed at the start.
  func testPagingIsStableWhile1000RowsAreInsertedConcurrently() async throws {
    let initial = QueryFixture.rows(400, prefix: "a").map { row -> QueryRow in
      var row = row
      row.deleted = nil
      return row
    }
    let inserted = QueryFixture.rows(1000, prefix: "b", seed: 7)
    try await TestDatabases.each { db in
      try await QueryFixture.migrated(db)
      try await db.transaction { uow in try await QueryFixture.insert(initial, in: uow) }
      for order in ["", "title, create_time desc"] {
        let batch = inserted.map { row -> QueryRow in
          var row = row
          row.id = order.isEmpty ? row.id : "c" + row.id.dropFirst()
          return row
        }
        let writer = Task {
          for chunk in stride(from: 0, to: batch.count, by: 10) {
            try await db.transaction { uow in try await QueryFixture.insert(Array(batch[chunk..<min(chunk + 10, batch.count)]), in: uow) }
            await Task.yield()
          }
        }
        let walked = try await QueryFixture.walk(orderBy: order, pageSize: 20, in: db) { try await Task.sleep(for: .milliseconds(2)) }
        try await writer.value
        XCTAssertEqual(walked.count, Set(walked).count, "\(db.dialect) \(order): a row came twice")
        let missing = Set(initial.map(\.id)).subtracting(walked)
        XCTAssertEqual(missing, [], "\(db.dialect) \(order): rows that existed at the start were skipped")
        let written = try await db.read { uow in try await QuizRepository().count("SELECT COUNT(*) AS total FROM quizzes", in: uow) }
        XCTAssertEqual(written, initial.count + batch.count * (order.isEmpty ? 1 : 2), "every concurrent insert landed")
      }
    }
  }

  func testLikePatternsEscapeTheirSpecialCharacters() {
    XCTAssertEqual(QuizQuerySQL.escapeLike(#"100%_\x"#), #"100\%\_\\x"#)
    XCTAssertEqual(QuizQuerySQL.escapeLike("plain"), "plain")
  }
}
