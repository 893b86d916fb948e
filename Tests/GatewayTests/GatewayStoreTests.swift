import Foundation
import Storage
import TestSupport
import XCTest

@testable import Gateway

/// The gateway's own database on SQLite and PostgreSQL: single-use keys and idempotency
/// claims, including two stores (two gateway replicas) on one database.
final class GatewayStoreTests: XCTestCase {
  func testConsumeOnceIsTrueOnlyTheFirstTimeWithinItsTTL() async throws {
    try await TestDatabases.each { db in
      let store = GatewayStore(database: db)
      try await store.migrate()
      let start = Date(timeIntervalSince1970: 1_800_000_000)
      let first = try await store.consumeOnce(key: "ticket-1", ttl: .seconds(30), now: start)
      let second = try await store.consumeOnce(key: "ticket-1", ttl: .seconds(30), now: start.addingTimeInterval(29))
      let other = try await store.consumeOnce(key: "ticket-2", ttl: .seconds(30), now: start.addingTimeInterval(29))
      let afterTTL = try await store.consumeOnce(key: "ticket-1", ttl: .seconds(30), now: start.addingTimeInterval(30))
      XCTAssertTrue(first)
      XCTAssertFalse(second, "a key is consumed once within its TTL")
      XCTAssertTrue(other)
      XCTAssertTrue(afterTTL, "after its TTL the key may be claimed again")
      // Migrating again (a second replica starting) changes nothing.
      try await store.migrate()
      let again = try await store.consumeOnce(key: "ticket-2", ttl: .seconds(30), now: start.addingTimeInterval(30))
      XCTAssertFalse(again)
    }
  }

  func testConcurrentConsumersOfOneKeyHaveExactlyOneWinner() async throws {
    try await TestDatabases.each { db in
      let store = GatewayStore(database: db)
      try await store.migrate()
      let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
        for _ in 0..<16 { group.addTask { try await store.consumeOnce(key: "race", ttl: .seconds(30)) } }
        var wins = 0
        for try await won in group where won { wins += 1 }
        return wins
      }
      XCTAssertEqual(wins, 1)
    }
  }

  func testSweepRemovesExpiredKeysAndRecordsOnly() async throws {
    try await TestDatabases.each { db in
      let store = GatewayStore(database: db)
      try await store.migrate()
      let start = Date(timeIntervalSince1970: 1_800_000_000)
      _ = try await store.consumeOnce(key: "old", ttl: .seconds(10), now: start)
      _ = try await store.consumeOnce(key: "new", ttl: .seconds(100), now: start)
      let id = IdempotencyRecordID(caller: "user:u1", method: "POST", path: "/api/v1/quizzes", key: "k")
      guard case .claimed(let token) = try await store.claim(id, fingerprint: "f", now: start) else { return XCTFail("not claimed") }
      try await store.complete(id, token: token, response: StoredResponse(status: 201, headers: [:], body: Data("{}".utf8)))
      let removed = try await store.sweep(now: start.addingTimeInterval(50))
      XCTAssertEqual(removed, 1, "only the expired single-use key")
      let afterADay = try await store.sweep(now: start.addingTimeInterval(24 * 3600 + 1))
      XCTAssertEqual(afterADay, 2, "the record after 24 h, the other key after its TTL")
    }
  }
}
