import Foundation
import QuizwireProtos
import SQLKit
import Storage
import SwiftProtobuf

/// A page of the `attempts` read model.
public struct AttemptRow: Sendable, Hashable {
  public var id: String
  public var quizID: String
  public var userID: String
  public var quizAuthorID: String
  public var finished: Bool
  public var score: Int64
  public var maxScore: Int64
  public var currentIndex: Int64
  public var questionCount: Int64
  public var startMs: Int64
  public var finishMs: Int64?
}

/// Attempts as an append-only event log plus the projections that follow it.
///
/// Projections (`attempts`, `leaderboard`, `leaderboard_versions`, `user_stats`) are written
/// in the same unit of work as the events they follow, not by a separate projector: a
/// finished attempt must be on the leaderboard of every replica as soon as `finished` is sent,
/// and a projector tracking its position would add lag and a second failure mode for no gain
/// at this write rate (one transaction per answer either way). Rebuilding replays the log.
public struct AttemptRepository: Sendable {
  public init() {}

  /// The outbox type and topic of a finished attempt.
  public static let finishedEventType = "attempt.finished"

  // MARK: Writes

  /// A new attempt: its `started` event and read-model row. Throws
  /// `StorageError.uniqueViolation` when the user already used the idempotency key.
  public func start(_ started: AttemptEvent.Started, in uow: UnitOfWork) async throws -> AttemptState {
    let state = AttemptState(started: started)
    try await uow.write(
      """
      INSERT INTO attempts (id, quiz_id, user_id, quiz_author_id, idempotency_key, state, score, max_score, current_index,
        question_count, seq, start_ms, finish_ms, last_deadline_ms)
      VALUES (\(bind: started.attemptID), \(bind: started.quizID), \(bind: started.userID), \(bind: started.quizAuthorID),
        \(bind: started.idempotencyKey), 'in_progress', 0, \(bind: Int64(state.maxScore)), 0, \(bind: Int64(started.questions.count)),
        1, \(bind: started.atMs), NULL, \(bind: state.lastDeadlineMs))
      """)
    try await self.insert(.started(started), attemptID: started.attemptID, seq: 1, in: uow)
    try await uow.write(
      """
      INSERT INTO user_stats (user_id, attempts, finished, total_score) VALUES (\(bind: started.userID), 1, 0, 0)
      ON CONFLICT (user_id) DO UPDATE SET attempts = user_stats.attempts + 1
      """)
    return state
  }

  /// Appends `events` after `state` (which must be the attempt's current fold) and brings the
  /// projections along. Throws `StorageError.uniqueViolation` when another writer appended
  /// first (reload and retry). Returns the new state and, when the attempt finished and the
  /// quiz's leaderboard changed, its new version.
  public func append(
    _ events: [AttemptEvent], to state: AttemptState, in uow: UnitOfWork
  ) async throws -> (state: AttemptState, leaderboardVersion: Int64?) {
    guard !events.isEmpty else { return (state, nil) }
    var next = state
    var rows: [SQLQueryString] = []
    for event in events {
      next.apply(event)
      rows.append("(\(bind: state.id), \(bind: next.seq), \(bind: event.atMs), \(bind: event.type), \(bind: try event.payload()))")
    }
    // One statement per 100 events (5 binds each: far below either dialect's bind limit).
    for start in stride(from: 0, to: rows.count, by: 100) {
      try await uow.write(
        "INSERT INTO attempt_events (attempt_id, seq, time_ms, type, payload) VALUES "
          + rows[start..<min(start + 100, rows.count)].joined(separator: ", "))
    }
    try await uow.write(
      """
      UPDATE attempts SET state = \(bind: next.isFinished ? "finished" : "in_progress"), score = \(bind: Int64(next.score)),
        current_index = \(bind: Int64(next.currentIndex)), seq = \(bind: next.seq), finish_ms = \(bind: next.finishMs),
        last_deadline_ms = \(bind: next.lastDeadlineMs)
      WHERE id = \(bind: state.id)
      """)
    guard !state.isFinished, let result = next.result else { return (next, nil) }
    let version = try await self.project(finished: next, result: result, in: uow)
    var payload = Scoring_V1_AttemptFinished()
    payload.attemptID = next.id
    payload.quizID = next.started.quizID
    payload.userID = next.started.userID
    payload.score = next.score
    payload.maxScore = next.maxScore
    payload.startTime = Google_Protobuf_Timestamp(milliseconds: next.started.atMs)
    payload.finishTime = Google_Protobuf_Timestamp(milliseconds: result.finishMs)
    try await Outbox.append(
      type: Self.finishedEventType, key: next.id, keyVersion: 1, payload: try payload.serializedBytes(), timeMs: result.finishMs, in: uow)
    return (next, version)
  }

  /// The projections of one finished attempt: user stats, and the leaderboard when it beats
  /// the user's best on that quiz. Returns the quiz's new version if the board changed.
  func project(finished state: AttemptState, result: LeaderboardResult, in uow: UnitOfWork) async throws -> Int64? {
    try await uow.write(
      """
      INSERT INTO user_stats (user_id, attempts, finished, total_score) VALUES (\(bind: result.userID), 0, 1, \(bind: Int64(result.score)))
      ON CONFLICT (user_id) DO UPDATE SET finished = user_stats.finished + 1, total_score = user_stats.total_score + excluded.total_score
      """)
    return try await LeaderboardRepository().offer(result, quizID: state.started.quizID, in: uow)
  }

  private func insert(_ event: AttemptEvent, attemptID: String, seq: Int64, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO attempt_events (attempt_id, seq, time_ms, type, payload)
      VALUES (\(bind: attemptID), \(bind: seq), \(bind: event.atMs), \(bind: event.type), \(bind: try event.payload()))
      """)
  }

  // MARK: Reads

  /// The attempt folded from its log (nil: no such attempt).
  public func find(id: String, in uow: UnitOfWork) async throws -> AttemptState? {
    let rows = try await uow.sql.raw("SELECT type, payload FROM attempt_events WHERE attempt_id = \(bind: id) ORDER BY seq").all()
    guard !rows.isEmpty else { return nil }
    let events = try rows.map { row in
      try AttemptEvent.decode(type: try row.decode(column: "type", as: String.self), payload: try row.decode(column: "payload", as: Data.self))
    }
    return try AttemptState.fold(events)
  }

  /// The attempt a user started with `key`, if any.
  public func find(userID: String, idempotencyKey key: String, in uow: UnitOfWork) async throws -> String? {
    try await uow.sql.raw("SELECT id FROM attempts WHERE user_id = \(bind: userID) AND idempotency_key = \(bind: key)").all()
      .first?.decode(column: "id", as: String.self)
  }

  public enum Owner: Sendable, Hashable {
    case quiz(String)
    case user(String)
  }

  /// Newest first, keyset after (`beforeStartMs`, `beforeID`).
  public func list(_ owner: Owner, limit: Int, after cursor: (startMs: Int64, id: String)?, in uow: UnitOfWork) async throws -> [AttemptRow] {
    let condition: SQLQueryString =
      switch owner {
      case .quiz(let id): "quiz_id = \(bind: id)"
      case .user(let id): "user_id = \(bind: id)"
      }
    let keyset: SQLQueryString =
      cursor.map { " AND (start_ms < \(bind: $0.startMs) OR (start_ms = \(bind: $0.startMs) AND id < \(bind: $0.id)))" } ?? ""
    let rows = try await uow.sql.raw(
      "SELECT " + Self.columns + " FROM attempts WHERE " + condition + keyset + " ORDER BY start_ms DESC, id DESC LIMIT \(bind: limit)"
    ).all()
    return try rows.map(Self.row)
  }

  /// In-progress attempts whose last deadline passed before `nowMs` (the abandoned-attempt job).
  public func abandoned(beforeMs nowMs: Int64, limit: Int, in uow: UnitOfWork) async throws -> [String] {
    try await uow.sql.raw(
      "SELECT id FROM attempts WHERE state = 'in_progress' AND last_deadline_ms < \(bind: nowMs) ORDER BY last_deadline_ms LIMIT \(bind: limit)"
    ).all().map { try $0.decode(column: "id", as: String.self) }
  }

  static let columns: SQLQueryString =
    "id, quiz_id, user_id, quiz_author_id, state, score, max_score, current_index, question_count, start_ms, finish_ms"

  static func row(_ row: any SQLRow) throws -> AttemptRow {
    AttemptRow(
      id: try row.decode(column: "id", as: String.self), quizID: try row.decode(column: "quiz_id", as: String.self),
      userID: try row.decode(column: "user_id", as: String.self), quizAuthorID: try row.decode(column: "quiz_author_id", as: String.self),
      finished: try row.decode(column: "state", as: String.self) == "finished", score: try row.decode(column: "score", as: Int64.self),
      maxScore: try row.decode(column: "max_score", as: Int64.self), currentIndex: try row.decode(column: "current_index", as: Int64.self),
      questionCount: try row.decode(column: "question_count", as: Int64.self), startMs: try row.decode(column: "start_ms", as: Int64.self),
      finishMs: try row.decode(column: "finish_ms", as: Int64?.self))
  }
}

extension Google_Protobuf_Timestamp {
  init(milliseconds ms: Int64) {
    self.init(seconds: ms / 1000, nanos: Int32(ms % 1000) * 1_000_000)
  }
}
