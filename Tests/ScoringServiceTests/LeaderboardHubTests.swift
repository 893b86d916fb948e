import Foundation
import QuizwireProtos
import Synchronization
import XCTest

@testable import ScoringService

/// The hub's fan-out without a server: one load per change for all watchers of a quiz, and a
/// watcher that doesn't read holds only the newest snapshot while the others get every one.
final class LeaderboardHubTests: XCTestCase {
  func testASlowWatcherGetsOnlyTheNewestAndOneLoadServesEveryWatcher() async throws {
    let version = Atomic<Int64>(0)
    let loads = Atomic<Int>(0)
    let hub = LeaderboardHub { quizID in
      loads.add(1, ordering: .relaxed)
      return .with {
        $0.quizID = quizID
        $0.version = version.load(ordering: .relaxed)
        $0.entries = [.with { $0.userID = "u1" }]
      }
    }
    let fast = try await hub.watch(quizID: "qz_1")
    let slow = try await hub.watch(quizID: "qz_1")
    XCTAssertEqual(hub.watcherCount(quizID: "qz_1"), 2)
    var fastReader = fast.stream.makeAsyncIterator()
    let firstFast = await fastReader.next()
    XCTAssertEqual(firstFast?.version, 0)
    let loadsBefore = loads.load(ordering: .relaxed)

    for v in Int64(1)...50 {
      version.store(v, ordering: .relaxed)
      await hub.changed(quizID: "qz_1", version: v)
      let got = await fastReader.next()
      XCTAssertEqual(got?.version, v, "a reading watcher gets every version")
    }
    XCTAssertEqual(loads.load(ordering: .relaxed) - loadsBefore, 50, "one load per change, shared by both watchers")
    await hub.changed(quizID: "qz_1", version: 50)
    XCTAssertEqual(loads.load(ordering: .relaxed) - loadsBefore, 50, "a version handed out already is not reloaded")
    await hub.changed(quizID: "qz_2", version: 1)
    XCTAssertEqual(loads.load(ordering: .relaxed) - loadsBefore, 50, "nobody watches qz_2: no load")

    // The slow watcher never read: exactly one snapshot is pending, the newest.
    hub.unwatch(quizID: "qz_1", id: slow.id)
    var pending: [Int64] = []
    for await snapshot in slow.stream { pending.append(snapshot.version) }
    XCTAssertEqual(pending, [50])
    hub.unwatch(quizID: "qz_1", id: fast.id)
    XCTAssertEqual(hub.watcherCount(quizID: "qz_1"), 0)
  }
}
