import Foundation
import GRPCCore
import QuizwireProtos
import Storage
import SwiftProtobuf

extension ScoringService {
  public func getLeaderboard(
    request: Scoring_V1_GetLeaderboardRequest, context: ServerContext
  ) async throws -> Scoring_V1_GetLeaderboardResponse {
    try await self.checkPublicBoard(request.quizID)
    let size = request.pageSize <= 0 ? 50 : min(Int(request.pageSize), 500)
    let offset = request.pageToken.isEmpty ? 0 : (Int(request.pageToken) ?? -1)
    guard (0...Self.maxLeaderboardOffset).contains(offset) else { throw RPCError(code: .invalidArgument, message: "bad page_token") }
    // The top of the board comes from memory (write-through); deeper pages from the projection.
    let board = try await self.hub.board(quizID: request.quizID)
    guard !board.hidden else { throw RPCError(code: .notFound, message: "quiz \(request.quizID) not found") }
    var response = Scoring_V1_GetLeaderboardResponse()
    response.version = board.version
    let rows: [LeaderboardResult]
    let more: Bool
    if let page = board.page(offset: offset, limit: size) {
      (rows, more) = page
    } else {
      let read = try await self.db.read { uow in try await self.board.page(quizID: request.quizID, offset: offset, limit: size + 1, in: uow) }
      (rows, more) = (Array(read.prefix(size)), read.count > size)
    }
    response.entries = await self.reader.entries(rows, offset: offset)
    if more { response.nextPageToken = String(offset + size) }
    return response
  }

  /// Page tokens are rank offsets; past this a board is not browsed but searched.
  static let maxLeaderboardOffset = 1_000_000

  public func watchLeaderboard(
    request: Scoring_V1_WatchLeaderboardRequest, response: RPCWriter<Scoring_V1_LeaderboardSnapshot>, context: ServerContext
  ) async throws {
    guard request.topN >= 0, request.topN <= Int32(LeaderboardHub.maxTop) else {
      throw RPCError(code: .invalidArgument, message: "top_n must be 1..100")
    }
    let top = request.topN == 0 ? 10 : Int(request.topN)
    try await self.checkPublicBoard(request.quizID)
    let (id, stream) = try await self.hub.watch(quizID: request.quizID)
    defer { self.hub.unwatch(quizID: request.quizID, id: id) }
    var sent: Int64 = -1
    for await snapshot in stream where snapshot.version > sent {
      sent = snapshot.version
      var mine = snapshot
      mine.entries = Array(snapshot.entries.prefix(top))
      try await response.write(mine)
    }
  }

  /// Leaderboards are public for published quizzes (their author and admins also see a
  /// draft's); a deleted quiz's board is hidden.
  func checkPublicBoard(_ quizID: String) async throws {
    guard !quizID.isEmpty else { throw RPCError(code: .invalidArgument, message: "quiz_id is required") }
    let viewer = Self.viewer()
    let quiz = try await self.visibleSummary(quizID, viewer: viewer)
    guard quiz.state == .published || viewer.isAdmin || viewer.userID == quiz.authorID else {
      throw RPCError(code: .notFound, message: "quiz \(quizID) not found")
    }
  }
}

/// Leaderboard reads shared by the handlers and the hub: pages with names, the shared snapshot.
public struct LeaderboardReader: Sendable {
  let db: Database
  let names: any NameDirectory
  let board = LeaderboardRepository()

  public init(db: Database, names: any NameDirectory) {
    self.db = db
    self.names = names
  }

  /// The board's top as the projection holds it (`TopBoard.capacity + 1` rows: one more tells
  /// whether it goes on), for the hub's memory.
  public func top(quizID: String) async throws -> TopBoard {
    let (rows, version) = try await self.db.read { uow in
      (
        try await self.board.page(quizID: quizID, offset: 0, limit: TopBoard.capacity + 1, in: uow),
        try await self.board.version(quizID: quizID, in: uow)
      )
    }
    return TopBoard(rows: version.hidden ? [] : rows, version: version.version, hidden: version.hidden)
  }

  public func entries(_ rows: [LeaderboardResult], offset: Int) async -> [Scoring_V1_LeaderboardEntry] {
    let names = await self.names.names(ids: rows.map(\.userID))
    return rows.enumerated().map { i, row in
      .with {
        $0.rank = Int32(offset + i + 1)
        $0.userID = row.userID
        $0.displayName = names[row.userID] ?? ""
        $0.score = row.score
        $0.durationMs = row.durationMs
        $0.attemptID = row.attemptID
        $0.finishTime = Google_Protobuf_Timestamp(milliseconds: row.finishMs)
      }
    }
  }
}
