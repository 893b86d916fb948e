import Foundation
import QuizwireProtos
import SQLKit
import Storage

/// What to load beside a quiz's own row. A read mask without `questions` (or `tags`) leaves
/// the query for them out altogether.
public struct QuizLoad: Sendable, Hashable {
  public var tags: Bool
  public var questions: Bool
  public init(tags: Bool = true, questions: Bool = true) {
    self.tags = tags
    self.questions = questions
  }
  public static let everything = QuizLoad()
  public static let row = QuizLoad(tags: false, questions: false)
}

/// Quizzes on SQLKit, both dialects, every value bound. A page of quizzes loads in at most three
/// queries whatever its size: the rows, then tags and questions `WHERE quiz_id IN (…)`.
public struct QuizRepository: Sendable {
  public init() {}

  static let columns: SQLQueryString = """
    id, author_id, title, description, state, question_time_limit_seconds, question_count, etag, create_time_ms, update_time_ms, deleted_time_ms,
    author_display_name, author_name_version
    """
  /// What reads select: the written columns and the play statistics, which only the
  /// `quiz.play-stats` consumer writes (`QuizPlayStats`).
  static let readColumns: SQLQueryString = Self.columns + ", play_count, play_score_sum, play_max_score_sum"

  // MARK: Writes

  /// A new quiz with its tags and questions.
  public func insert(_ q: QuizRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      "INSERT INTO quizzes (" + Self.columns
        + """
        ) VALUES (\(bind: q.id), \(bind: q.authorID), \(bind: q.title), \(bind: q.description), \(bind: q.state.rawValue),
          \(bind: q.questionTimeLimitSeconds), \(bind: q.questionCount), \(bind: q.etag), \(bind: q.createTimeMs),
          \(bind: q.updateTimeMs), \(bind: q.deletedTimeMs), \(bind: q.authorDisplayName), \(bind: q.authorNameVersion))
        """)
    try await self.insertTags(q.tags, quizID: q.id, in: uow)
    try await self.insertQuestions(q.questions ?? [], quizID: q.id, in: uow)
  }

  /// Writes `q` over the stored row if its etag is still `expectedEtag`; false when another
  /// write got there first (the caller answers ETAG_MISMATCH). Tags and questions are replaced
  /// when asked (`questions` must then be loaded).
  public func update(
    _ q: QuizRecord, expectedEtag: String, replaceTags: Bool, replaceQuestions: Bool, in uow: UnitOfWork
  ) async throws -> Bool {
    let rows = try await uow.sql.raw(
      """
      UPDATE quizzes SET title = \(bind: q.title), description = \(bind: q.description), state = \(bind: q.state.rawValue),
        question_time_limit_seconds = \(bind: q.questionTimeLimitSeconds), question_count = \(bind: q.questionCount),
        etag = \(bind: q.etag), update_time_ms = \(bind: q.updateTimeMs), deleted_time_ms = \(bind: q.deletedTimeMs)
      WHERE id = \(bind: q.id) AND etag = \(bind: expectedEtag) RETURNING id
      """
    ).all()
    guard !rows.isEmpty else { return false }
    if replaceTags {
      try await uow.write("DELETE FROM quiz_tags WHERE quiz_id = \(bind: q.id)")
      try await self.insertTags(q.tags, quizID: q.id, in: uow)
    }
    if replaceQuestions, let questions = q.questions {
      try await uow.write("DELETE FROM quiz_questions WHERE quiz_id = \(bind: q.id)")
      try await self.insertQuestions(questions, quizID: q.id, in: uow)
    }
    return true
  }

  private func insertTags(_ tags: [String], quizID: String, in uow: UnitOfWork) async throws {
    guard !tags.isEmpty else { return }
    let rows = tags.map { tag -> SQLQueryString in "(\(bind: quizID), \(bind: tag))" }
    try await uow.write("INSERT INTO quiz_tags (quiz_id, tag) VALUES " + rows.joined(separator: ", "))
  }

  /// In chunks: a 200-question quiz stays well under either dialect's bind limit.
  private func insertQuestions(_ questions: [Quiz_V1_Question], quizID: String, in uow: UnitOfWork) async throws {
    var position = 0
    for chunk in questions.chunked(50) {
      var rows: [SQLQueryString] = []
      for question in chunk {
        let body = try question.serializedBytes() as Data
        rows.append("(\(bind: question.id), \(bind: quizID), \(bind: position), \(bind: body))")
        position += 1
      }
      try await uow.write("INSERT INTO quiz_questions (id, quiz_id, position, body) VALUES " + rows.joined(separator: ", "))
    }
  }

  // MARK: Reads

  /// One quiz, deleted or not. `forUpdate` locks its row until the transaction ends on
  /// PostgreSQL (SQLite's single writer already serializes writers).
  public func find(id: String, load: QuizLoad = .everything, forUpdate: Bool = false, in uow: UnitOfWork) async throws -> QuizRecord? {
    let lock: SQLQueryString = forUpdate && uow.dialect == .postgres ? " FOR UPDATE" : ""
    let rows = try await Self.rows("SELECT " + Self.readColumns + " FROM quizzes WHERE id = \(bind: id)" + lock, in: uow)
    return try await self.attach(load, to: rows, in: uow).first
  }

  /// The quizzes among `ids` that exist (deleted ones too), in no particular order.
  public func find(ids: [String], load: QuizLoad, in uow: UnitOfWork) async throws -> [QuizRecord] {
    guard !ids.isEmpty else { return [] }
    let rows = try await Self.rows("SELECT " + Self.readColumns + " FROM quizzes WHERE id IN (\(binds: ids))", in: uow)
    return try await self.attach(load, to: rows, in: uow)
  }

  /// A page of a list: `SELECT <columns> FROM quizzes` + `tail` (`QuizQuerySQL.pageTail` or
  /// `cursorTail`: conditions, order, limit, all bound), then tags and questions for the
  /// whole page as `load` asks.
  public func list(tail: SQLQueryString, load: QuizLoad, in uow: UnitOfWork) async throws -> [QuizRecord] {
    let rows = try await Self.rows("SELECT " + Self.readColumns + " FROM quizzes" + tail, in: uow)
    return try await self.attach(load, to: rows, in: uow)
  }

  /// The count a `QuizQuerySQL.count` query answers.
  public func count(_ query: SQLQueryString, in uow: UnitOfWork) async throws -> Int {
    struct Row: Decodable { var total: Int }
    return try await uow.sql.raw(query).first(decoding: Row.self)?.total ?? 0
  }

  /// Whether no quiz was ever stored (the demo seed runs only then).
  public func isEmpty(in uow: UnitOfWork) async throws -> Bool {
    try await uow.sql.raw("SELECT id FROM quizzes LIMIT 1").all().isEmpty
  }

  /// Tags and questions of `quizzes` in one query each.
  private func attach(_ load: QuizLoad, to quizzes: [QuizRecord], in uow: UnitOfWork) async throws -> [QuizRecord] {
    guard !quizzes.isEmpty, load.tags || load.questions else { return quizzes }
    let ids = quizzes.map(\.id)
    var tags: [String: [String]] = [:]
    var questions: [String: [Quiz_V1_Question]] = [:]
    if load.tags {
      let rows = try await uow.sql.raw("SELECT quiz_id, tag FROM quiz_tags WHERE quiz_id IN (\(binds: ids)) ORDER BY quiz_id, tag").all()
      for row in rows { tags[try row.decode(column: "quiz_id", as: String.self), default: []].append(try row.decode(column: "tag", as: String.self)) }
    }
    if load.questions {
      let rows = try await uow.sql.raw("SELECT quiz_id, body FROM quiz_questions WHERE quiz_id IN (\(binds: ids)) ORDER BY quiz_id, position")
        .all()
      for row in rows {
        let body = try row.decode(column: "body", as: Data.self)
        questions[try row.decode(column: "quiz_id", as: String.self), default: []].append(try Quiz_V1_Question(serializedBytes: body))
      }
    }
    return quizzes.map { quiz in
      var quiz = quiz
      if load.tags { quiz.tags = tags[quiz.id] ?? [] }
      if load.questions { quiz.questions = questions[quiz.id] ?? [] }
      return quiz
    }
  }

  static func rows(_ query: SQLQueryString, in uow: UnitOfWork) async throws -> [QuizRecord] {
    try await uow.sql.raw(query).all().map { row in
      let state = try row.decode(column: "state", as: String.self)
      return QuizRecord(
        id: try row.decode(column: "id", as: String.self), authorID: try row.decode(column: "author_id", as: String.self),
        title: try row.decode(column: "title", as: String.self), description: try row.decode(column: "description", as: String.self),
        tags: [], state: QuizState(rawValue: state) ?? .draft,
        questionTimeLimitSeconds: try row.decode(column: "question_time_limit_seconds", as: Int.self),
        questionCount: try row.decode(column: "question_count", as: Int.self), etag: try row.decode(column: "etag", as: String.self),
        createTimeMs: try row.decode(column: "create_time_ms", as: Int64.self),
        updateTimeMs: try row.decode(column: "update_time_ms", as: Int64.self),
        deletedTimeMs: try row.decode(column: "deleted_time_ms", as: Int64?.self),
        authorDisplayName: try row.decode(column: "author_display_name", as: String.self),
        authorNameVersion: try row.decode(column: "author_name_version", as: Int64.self),
        plays: QuizPlays(
          count: try row.decode(column: "play_count", as: Int64.self), scoreSum: try row.decode(column: "play_score_sum", as: Int64.self),
          maxScoreSum: try row.decode(column: "play_max_score_sum", as: Int64.self)))
    }
  }
}

extension Array {
  func chunked(_ size: Int) -> [ArraySlice<Element>] {
    stride(from: 0, to: self.count, by: size).map { self[$0..<Swift.min($0 + size, self.count)] }
  }
}
