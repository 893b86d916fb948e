import Foundation
import QuizwireProtos
import Synchronization
import XCTest

@testable import ScoringService

/// The hub without a server: reads are served from memory once loaded, this replica's finishes
/// are written through without a load, other replicas' versions make the board stale (one
/// reload shared by all watchers), and a watcher that doesn't read holds only the newest.
final class LeaderboardHubTests: XCTestCase {
  /// A projection in memory standing in for the table: `loads` counts reads of it.
  final class Table: Sendable {
    let rows = Mutex<(results: [LeaderboardResult], version: Int64)>(([], 0))
    let loads = Atomic<Int>(0)

    func add(_ result: LeaderboardResult) -> Int64 {
      self.rows.withLock { rows in
        rows.results.removeAll { $0.userID == result.userID }
        rows.results.append(result)
        rows.results.sort(by: LeaderboardResult.ranksBefore)
        rows.version += 1
        return rows.version
      }
    }

    func hub(maxBoards: Int = 1_000) -> LeaderboardHub {
      LeaderboardHub(
        maxBoards: maxBoards,
        load: { _ in
          self.loads.add(1, ordering: .relaxed)
          return self.rows.withLock { TopBoard(rows: Array($0.results.prefix(TopBoard.capacity + 1)), version: $0.version, hidden: false) }
        },
        present: { rows, offset in
          rows.enumerated().map { i, r in
            .with {
              $0.rank = Int32(offset + i + 1); $0.userID = r.userID; $0.score = r.score
            }
          }
        })
    }
  }

  static func result(_ n: Int, score: Int32) -> LeaderboardResult {
    LeaderboardResult(attemptID: "at_\(n)", userID: "u\(n)", score: score, maxScore: 100, durationMs: 1_000, finishMs: Int64(n))
  }

  func testWritesOfThisReplicaAreWrittenThroughAndOthersMakeTheBoardStale() async throws {
    let table = Table()
    let hub = table.hub()
    _ = table.add(Self.result(1, score: 5))
    let first = try await hub.board(quizID: "qz_1")
    XCTAssertEqual(first.results.map(\.userID), ["u1"])
    XCTAssertEqual(table.loads.load(ordering: .relaxed), 1)

    // 20 finishes committed here: memory follows without a single load.
    for n in 2...21 {
      let result = Self.result(n, score: Int32(n + 10))
      let version = table.add(result)
      await hub.finished(quizID: "qz_1", result: result, version: version)
      let board = try await hub.board(quizID: "qz_1")
      XCTAssertEqual(board.version, version)
      XCTAssertEqual(board.results.first?.userID, "u\(n)")
    }
    XCTAssertEqual(table.loads.load(ordering: .relaxed), 1, "write-through: no read of the projection")
    XCTAssertEqual(hub.statistics.misses, 1)
    XCTAssertEqual(hub.statistics.hits, 20)

    // Another replica's finish: heard as a version, the next read reloads (once).
    let elsewhere = table.add(Self.result(99, score: 99))
    await hub.changed(quizID: "qz_1", version: elsewhere)
    let reloaded = try await hub.board(quizID: "qz_1")
    XCTAssertEqual(reloaded.results.first?.userID, "u99")
    _ = try await hub.board(quizID: "qz_1")
    XCTAssertEqual(table.loads.load(ordering: .relaxed), 2)

    // Our own version heard again (our NOTIFY coming back) changes nothing.
    await hub.changed(quizID: "qz_1", version: elsewhere)
    _ = try await hub.board(quizID: "qz_1")
    XCTAssertEqual(table.loads.load(ordering: .relaxed), 2)
  }

  func testASlowWatcherGetsOnlyTheNewestAndOneLoadServesEveryWatcher() async throws {
    let table = Table()
    let hub = table.hub()
    let fast = try await hub.watch(quizID: "qz_1")
    let slow = try await hub.watch(quizID: "qz_1")
    XCTAssertEqual(hub.watcherCount(quizID: "qz_1"), 2)
    var fastReader = fast.stream.makeAsyncIterator()
    let firstFast = await fastReader.next()
    XCTAssertEqual(firstFast?.version, 0)
    let loadsBefore = table.loads.load(ordering: .relaxed)

    for n in 1...50 {
      let version = table.add(Self.result(n, score: Int32(n)))
      await hub.changed(quizID: "qz_1", version: version)  // another replica's write
      let got = await fastReader.next()
      XCTAssertEqual(got?.version, version, "a reading watcher gets every version")
    }
    XCTAssertEqual(table.loads.load(ordering: .relaxed) - loadsBefore, 50, "one load per change, shared by both watchers")
    await hub.changed(quizID: "qz_1", version: 50)
    XCTAssertEqual(table.loads.load(ordering: .relaxed) - loadsBefore, 50, "a version handed out already is not reloaded")
    await hub.changed(quizID: "qz_2", version: 1)
    XCTAssertEqual(table.loads.load(ordering: .relaxed) - loadsBefore, 50, "nobody reads or watches qz_2: no load")

    // A finish of this replica reaches the watchers without a load.
    let result = Self.result(51, score: 51)
    let version = table.add(result)
    await hub.finished(quizID: "qz_1", result: result, version: version)
    let written = await fastReader.next()
    XCTAssertEqual(written?.version, 51)
    XCTAssertEqual(written?.entries.first?.userID, "u51")
    XCTAssertEqual(table.loads.load(ordering: .relaxed) - loadsBefore, 50)

    // The slow watcher never read: exactly one snapshot is pending, the newest.
    hub.unwatch(quizID: "qz_1", id: slow.id)
    var pending: [Int64] = []
    for await snapshot in slow.stream { pending.append(snapshot.version) }
    XCTAssertEqual(pending, [51])
    hub.unwatch(quizID: "qz_1", id: fast.id)
    XCTAssertEqual(hub.watcherCount(quizID: "qz_1"), 0)
  }

  func testBoardsBeyondTheBoundAreEvictedLeastRecentlyReadFirst() async throws {
    let table = Table()
    let hub = table.hub(maxBoards: 3)
    for quiz in ["a", "b", "c"] { _ = try await hub.board(quizID: quiz) }
    _ = try await hub.board(quizID: "a")  // "b" is now the least recently read
    _ = try await hub.board(quizID: "d")
    XCTAssertEqual(hub.statistics.entries, 3)
    XCTAssertEqual(hub.statistics.evictions, 1)
    let loads = table.loads.load(ordering: .relaxed)
    _ = try await hub.board(quizID: "a")
    XCTAssertEqual(table.loads.load(ordering: .relaxed), loads, "a was kept")
    _ = try await hub.board(quizID: "b")
    XCTAssertEqual(table.loads.load(ordering: .relaxed), loads + 1, "b was evicted")
  }
}
