import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// Every filter field and every `order_by` is served by an index, on both databases, as the
/// planners show it (`EXPLAIN QUERY PLAN` on SQLite; `EXPLAIN` on PostgreSQL with sequential
/// scans priced out, so the plan shows whether an index *can* serve the query at all).
final class QuizQueryExplainTests: XCTestCase {
  /// Filter → (SQLite index, PostgreSQL index) expected in the plan.
  static let filterIndexes: [(filter: String, order: String, sqlite: String, postgres: String)] = [
    ("state = PUBLISHED", "", "quizzes_state_created", "quizzes_state_created"),
    ("author_id = bob", "", "quizzes_author_created", "quizzes_author_created"),
    (#"create_time > "2023-11-14T22:16:00Z""#, "", "quizzes_created", "quizzes_created"),
    (#"update_time > "2023-11-14T22:16:00Z""#, "update_time", "quizzes_updated", "quizzes_updated"),
    (#"title = "Rust""#, "", "quizzes_title", "quizzes_title"),
    // The tag test: an index lookup on quiz_tags (its primary key per row on SQLite; the
    // (tag, quiz_id) index, joined, on PostgreSQL).
    ("tag = swift", "", "SEARCH quiz_tags", "quiz_tags_tag"),
    // PostgreSQL: the pg_trgm GIN index (shown on the count, where no order index competes
    // with it). SQLite has no substring index: the LIKE is checked on the rows its order
    // index yields, no table scan and no sort.
    (#"title : "swift""#, "", "quizzes_created", "quizzes_title_trgm"),
  ]

  static let orderIndexes: [(order: String, index: String)] = [
    ("", "quizzes_created"), ("create_time", "quizzes_created"), ("update_time desc", "quizzes_updated"), ("update_time", "quizzes_updated"),
    ("title", "quizzes_title"), ("title desc", "quizzes_title"),
  ]

  private func plan(_ query: ListQuery, _ visibility: QuizVisibility = .all, count: Bool = false, in db: Database) async throws -> String {
    let select: SQLQueryString =
      count ? QuizQuerySQL.count(query, visibility: visibility) : "SELECT id FROM quizzes" + QuizQuerySQL.pageTail(query, visibility: visibility)
    switch db.dialect {
    case .sqlite:
      return try await db.read { uow in
        try await uow.sql.raw("EXPLAIN QUERY PLAN " + select).all().map { try $0.decode(column: "detail", as: String.self) }
      }.joined(separator: "\n")
    case .postgres:
      return try await db.transaction { uow in
        try await uow.sql.raw("SET LOCAL enable_seqscan = off").run()
        return try await uow.sql.raw("EXPLAIN " + select).all().map { try $0.decode(column: "QUERY PLAN", as: String.self) }
      }.joined(separator: "\n")
    }
  }

  private func seeded(_ db: Database) async throws {
    try await QueryFixture.migrated(db)
    try await db.transaction { uow in try await QueryFixture.insert(QueryFixture.rows(2000), in: uow) }
    if db.dialect == .postgres { try await db.read { uow in try await uow.sql.raw("ANALYZE quizzes").run() } }
  }

  func testEveryFilterFieldIsServedByAnIndex() async throws {
    try await TestDatabases.each { db in
      try await self.seeded(db)
      for (filter, order, sqliteIndex, postgresIndex) in Self.filterIndexes {
        let trigram = postgresIndex == "quizzes_title_trgm" && db.dialect == .postgres
        let text = try await self.plan(try QueryFixture.query(filter, orderBy: order, pageSize: 20), count: trigram, in: db)
        let index = db.dialect == .sqlite ? sqliteIndex : postgresIndex
        XCTAssertTrue(text.contains(index), "\(db.dialect) \(filter): expected \(index) in\n\(text)")
        self.assertNoTableScan(text, db.dialect, filter)
      }
      // An anonymous list (published only, newest first): the state index gives the order.
      let anonymous = try await self.plan(try QueryFixture.query(pageSize: 20), .publishedOnly, in: db)
      XCTAssertTrue(anonymous.contains("quizzes_state_created"), "\(db.dialect) anonymous list:\n\(anonymous)")
    }
  }

  func testEveryOrderByIsServedByAnIndexWithoutASort() async throws {
    try await TestDatabases.each { db in
      try await self.seeded(db)
      for (order, index) in Self.orderIndexes {
        let query = try QueryFixture.query(orderBy: order, pageSize: 20)
        for q in [query, try QueryFixture.query(orderBy: order, pageSize: 20, token: query.nextPageToken(after: Self.middle))] {
          let text = try await self.plan(q, in: db)
          XCTAssertTrue(text.contains(index), "\(db.dialect) order_by \(order): expected \(index) in\n\(text)")
          self.assertNoTableScan(text, db.dialect, order)
          switch db.dialect {
          case .sqlite: XCTAssertFalse(text.contains("TEMP B-TREE"), "\(db.dialect) order_by \(order) sorts:\n\(text)")
          case .postgres: XCTAssertFalse(text.contains("Sort"), "\(db.dialect) order_by \(order) sorts:\n\(text)")
          }
        }
      }
    }
  }

  static let middle = QuizSortKey(id: "q01000", createTimeMs: 1_700_000_100_000, updateTimeMs: 1_700_000_120_000, title: "Rust")

  private func assertNoTableScan(_ plan: String, _ dialect: SQLDialectKind, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    switch dialect {
    case .sqlite:
      // "SCAN quizzes" alone is a table scan; "SCAN quizzes USING INDEX …" walks an index.
      let tableScan = plan.split(separator: "\n").contains { $0.contains("SCAN quizzes") && !$0.contains("INDEX") }
      XCTAssertFalse(tableScan, "SQLite \(what): table scan in\n\(plan)", file: file, line: line)
    case .postgres:
      XCTAssertFalse(plan.contains("Seq Scan on quizzes"), "PostgreSQL \(what): sequential scan in\n\(plan)", file: file, line: line)
    }
  }
}
