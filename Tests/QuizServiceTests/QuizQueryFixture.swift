import Foundation
import SQLKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// Rows for the query tests, inserted straight into the migrated schema, and a reference
/// evaluation of a filter in Swift to compare the SQL's answers with.
struct QueryRow: Sendable, Hashable {
  var id: String
  var author: String
  var title: String
  var state: QuizState
  var tags: [String]
  var created: Int64
  var updated: Int64
  var deleted: Int64?

  func matches(_ filter: QuizFilter) -> Bool {
    switch filter {
    case .and(let parts): parts.allSatisfy(self.matches)
    case .or(let parts): parts.contains(where: self.matches)
    case .not(let inner): !self.matches(inner)
    case .predicate(let p):
      switch p {
      case .state(let s, let equal): (self.state == s) == equal
      case .tag(let t): self.tags.contains(t)
      case .author(let a, let equal): (self.author == a) == equal
      case .titleEquals(let t): self.title == t
      // ASCII titles only in the fixture: SQLite's lower() folds ASCII only.
      case .titleContains(let t): t.isEmpty || self.title.lowercased().contains(t.lowercased())
      case .time(let field, let op, let ms):
        Self.compare(field == .createTime ? self.created : self.updated, op, ms)
      }
    }
  }

  static func compare(_ a: Int64, _ op: QuizComparison, _ b: Int64) -> Bool {
    switch op {
    case .equal: a == b
    case .notEqual: a != b
    case .less: a < b
    case .lessOrEqual: a <= b
    case .greater: a > b
    case .greaterOrEqual: a >= b
    }
  }
}

enum QueryFixture {
  static let codec = try! PageTokenCodec(secret: "query fixture page token secret")

  static func migrated(_ db: Database) async throws {
    _ = try await Migrator(service: QuizMigrations.service, migrations: QuizMigrations.all).migrate(db)
  }

  static func insert(_ rows: [QueryRow], in uow: UnitOfWork) async throws {
    for r in rows {
      try await uow.write(
        """
        INSERT INTO quizzes (id, author_id, title, description, state, question_time_limit_seconds, question_count, etag,
                             create_time_ms, update_time_ms, deleted_time_ms)
        VALUES (\(bind: r.id), \(bind: r.author), \(bind: r.title), '', \(bind: r.state.rawValue), 30, 0, 'e',
                \(bind: r.created), \(bind: r.updated), \(bind: r.deleted))
        """)
      for tag in r.tags { try await uow.write("INSERT INTO quiz_tags (quiz_id, tag) VALUES (\(bind: r.id), \(bind: tag))") }
    }
  }

  /// A deterministic mix: three authors, every state, some deleted, tied timestamps, and
  /// titles with LIKE's special characters and quotes.
  static func rows(_ count: Int, prefix: String = "q", seed: UInt64 = 42) -> [QueryRow] {
    var rng = seed
    func next(_ bound: Int) -> Int {
      rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Int((rng >> 33) % UInt64(bound))
    }
    let titles = [
      "Swift basics", "swift concurrency", "SQL 100% off", "under_score", #"back\slash"#, "O'Brien's quiz", "Go routines", "Rust",
      "'; DROP TABLE quizzes; --", "Advanced SWIFT",
    ]
    let tags = ["swift", "go", "sql", "x' OR '1'='1", "rust"]
    let states: [QuizState] = [.published, .published, .draft, .archived]
    return (0..<count).map { i in
      let created = Int64(1_700_000_000_000 + next(200) * 1000)  // many ties
      return QueryRow(
        id: "\(prefix)\(String(format: "%05d", i))", author: ["alice", "bob", "carol"][next(3)],
        title: titles[next(titles.count)] + (next(2) == 0 ? "" : " \(i % 7)"),
        state: states[next(states.count)], tags: Array(Set((0..<next(3)).map { _ in tags[next(tags.count)] })).sorted(), created: created,
        updated: created + Int64(next(50) * 1000), deleted: next(10) == 0 ? created + 5 : nil)
    }
  }

  static func query(
    _ filter: String = "", orderBy: String = "", pageSize: Int32 = 100, token: String = "", offset: Int32 = 0, showDeleted: Bool = false
  ) throws -> ListQuery {
    try ListQuery(
      filter: filter, orderBy: orderBy, pageSize: pageSize, pageToken: token, offset: offset, readMask: ["id"], showDeleted: showDeleted,
      scope: "test", tokens: Self.codec)
  }

  /// The ids of one page, through the repository's real SELECT.
  static func ids(_ query: ListQuery, _ visibility: QuizVisibility = .all, in db: Database) async throws -> [QuizRecord] {
    try await db.read { uow in try await QuizRepository().list(tail: QuizQuerySQL.pageTail(query, visibility: visibility), load: .row, in: uow) }
  }

  /// Every page of `query`, following next-page tokens; fails on a loop.
  static func walk(
    filter: String = "", orderBy: String = "", pageSize: Int32, visibility: QuizVisibility = .all, in db: Database,
    between: @Sendable () async throws -> Void = {}
  ) async throws -> [String] {
    var seen: [String] = []
    var token = ""
    for _ in 0..<10_000 {
      let q = try Self.query(filter, orderBy: orderBy, pageSize: pageSize, token: token)
      let rows = try await Self.ids(q, visibility, in: db)
      let (page, next) = q.page(of: rows) { $0.sortKey }
      seen += page.map(\.id)
      guard !next.isEmpty else { return seen }
      token = next
      try await between()
    }
    XCTFail("the walk did not end")
    return seen
  }
}
