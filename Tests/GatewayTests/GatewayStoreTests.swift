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

  func testClaimsReplayMismatchInFlightAndLeases() async throws {
    try await TestDatabases.each { db in
      // Two stores on one database: two gateway replicas.
      let (one, two) = (GatewayStore(database: db), GatewayStore(database: db))
      try await one.migrate()
      try await two.migrate()
      let start = Date(timeIntervalSince1970: 1_800_000_000)
      let id = IdempotencyRecordID(caller: "user:u1", method: "POST", path: "/api/v1/quizzes", key: "k1")
      guard case .claimed(let token) = try await one.claim(id, fingerprint: "f", now: start) else { return XCTFail("first claim") }
      let whileRunning = try await two.claim(id, fingerprint: "f", now: start.addingTimeInterval(1))
      XCTAssertEqual(whileRunning, .inFlight)
      let otherBody = try await two.claim(id, fingerprint: "g", now: start.addingTimeInterval(1))
      XCTAssertEqual(otherBody, .mismatch)
      var other = id
      other.caller = "user:u2"
      guard case .claimed = try await two.claim(other, fingerprint: "f", now: start) else { return XCTFail("another caller's key is its own") }

      let answer = StoredResponse(status: 201, headers: ["Location": "/api/v1/quizzes/q1"], body: Data(#"{"data":{"id":"q1"}}"#.utf8))
      try await one.complete(id, token: token, response: answer)
      let replayed = try await two.claim(id, fingerprint: "f", now: start.addingTimeInterval(3600))
      XCTAssertEqual(replayed, .replay(answer))
      let expired = try await two.claim(id, fingerprint: "g", now: start.addingTimeInterval(24 * 3600))
      guard case .claimed = expired else { return XCTFail("after 24 h the key is free: \(expired)") }

      // A claim whose gateway died holds only for its lease; the late owner can't overwrite
      // the claim that took over, and releasing frees the key.
      let dead = IdempotencyRecordID(caller: "user:u1", method: "POST", path: "/api/v1/quizzes", key: "k2")
      guard case .claimed(let stale) = try await one.claim(dead, fingerprint: "f", now: start) else { return XCTFail("claim") }
      let held = try await two.claim(dead, fingerprint: "f", now: start.addingTimeInterval(59))
      XCTAssertEqual(held, .inFlight)
      guard case .claimed(let fresh) = try await two.claim(dead, fingerprint: "f", now: start.addingTimeInterval(60)) else {
        return XCTFail("a claim past its lease is taken over")
      }
      try await one.complete(dead, token: stale, response: StoredResponse(status: 201, headers: [:], body: Data("late".utf8)))
      let stillRunning = try await one.claim(dead, fingerprint: "f", now: start.addingTimeInterval(61))
      XCTAssertEqual(stillRunning, .inFlight, "the stale owner's answer was not kept")
      try await two.release(dead, token: fresh)
      guard case .claimed = try await one.claim(dead, fingerprint: "f", now: start.addingTimeInterval(62)) else {
        return XCTFail("a released key is free")
      }
    }
  }

  func testConcurrentClaimsOfOneKeyHaveExactlyOneOwner() async throws {
    try await TestDatabases.each { db in
      let store = GatewayStore(database: db)
      try await store.migrate()
      let id = IdempotencyRecordID(caller: "user:u1", method: "POST", path: "/api/v1/quizzes", key: "race")
      let outcomes = try await withThrowingTaskGroup(of: IdempotencyClaim.self) { group in
        for _ in 0..<16 { group.addTask { try await store.claim(id, fingerprint: "f") } }
        var outcomes: [IdempotencyClaim] = []
        for try await outcome in group { outcomes.append(outcome) }
        return outcomes
      }
      let owners = outcomes.filter { if case .claimed = $0 { return true } else { return false } }
      XCTAssertEqual(owners.count, 1)
      XCTAssertEqual(outcomes.filter { $0 == .inFlight }.count, 15)
    }
  }
}
