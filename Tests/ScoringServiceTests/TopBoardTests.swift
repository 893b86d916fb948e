import XCTest

@testable import ScoringService

/// The write-through top of a board, without a server: applying each finish in version order
/// keeps exactly the projection's top (checked against a full re-sort), gaps are refused, and
/// pages are answered only when memory holds them.
final class TopBoardTests: XCTestCase {
  func testApplyingFinishesMatchesARecomputedTopAndRefusesGaps() {
    var rng = ProjectionRebuildTests.SeededGenerator(state: 7)
    var projection: [String: LeaderboardResult] = [:]  // user → best (the table)
    var board = TopBoard(rows: [], version: 0, hidden: false)
    var version: Int64 = 0
    for n in 0..<3_000 {
      let user = "u\(Int.random(in: 0..<250, using: &rng))"
      let result = LeaderboardResult(
        attemptID: String(format: "at_%05d", n), userID: user, score: Int32.random(in: 0...20, using: &rng), maxScore: 20,
        durationMs: Int64.random(in: 1_000...9_000, using: &rng), finishMs: Int64(n))
      // The projection's rule: only a better result moves the user's row (and the version).
      if let best = projection[user], !LeaderboardResult.ranksBefore(result, best) { continue }
      projection[user] = result
      version += 1
      XCTAssertTrue(board.apply(result, version: version))
      let expected = projection.values.sorted(by: LeaderboardResult.ranksBefore)
      XCTAssertEqual(board.results, Array(expected.prefix(TopBoard.capacity)), "after finish \(n)")
      XCTAssertEqual(board.complete, expected.count <= TopBoard.capacity)
    }
    XCTAssertFalse(board.apply(projection.values.first!, version: version + 2), "a gap needs a reload")
    XCTAssertFalse(board.apply(projection.values.first!, version: version), "an old version is not applied twice")
    XCTAssertEqual(board.version, version)
  }

  func testPagesComeFromMemoryOnlyWhenItHoldsThem() {
    let rows = (0..<101).map { i in
      LeaderboardResult(attemptID: "at_\(i)", userID: "u\(i)", score: Int32(200 - i), maxScore: 200, durationMs: 1, finishMs: 1)
    }
    let full = TopBoard(rows: rows, version: 3, hidden: false)
    XCTAssertFalse(full.complete, "101 rows: the board goes on past the top 100")
    XCTAssertEqual(full.page(offset: 0, limit: 50)?.rows.map(\.userID), (0..<50).map { "u\($0)" })
    XCTAssertEqual(full.page(offset: 0, limit: 50)?.more, true)
    XCTAssertNil(full.page(offset: 50, limit: 50), "the 101st row decides whether more follow: the database answers")
    XCTAssertNil(full.page(offset: 100, limit: 10))

    let small = TopBoard(rows: Array(rows.prefix(7)), version: 1, hidden: false)
    XCTAssertEqual(small.page(offset: 0, limit: 50)?.rows.count, 7)
    XCTAssertEqual(small.page(offset: 0, limit: 50)?.more, false)
    XCTAssertEqual(small.page(offset: 5, limit: 2)?.more, false)
    XCTAssertEqual(small.page(offset: 4, limit: 2)?.more, true)
    XCTAssertEqual(small.page(offset: 20, limit: 5)?.rows, [])

    var hidden = TopBoard(rows: [], version: 4, hidden: true)
    XCTAssertFalse(hidden.apply(rows[0], version: 5), "a hidden board is reloaded, never written through")
  }
}
