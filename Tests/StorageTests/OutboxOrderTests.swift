import Foundation
import Storage
import Synchronization
import TestSupport
import XCTest

/// Outbox offsets become visible in commit order: a consumer reading "after the last offset I
/// saw" while producers commit never skips one.
final class OutboxOrderTests: XCTestCase {
  static let producers = 8
  static let eventsPerProducer = 40

  func testALiveConsumerNeverSkipsAnOffsetOnPostgres() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { return XCTFail("QUIZWIRE_TEST_POSTGRES_URL is required (QUIZWIRE_REQUIRE_ALL=1)") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL to run it")
    }
    // A connection per producer plus the consumer's: all eight transactions can be open at once.
    try await TestDatabases.withPostgres(url, poolSize: Self.producers + 2) { db in
      try await self.runProducersAndAConsumer(db)
    }
  }

  func testALiveConsumerNeverSkipsAnOffsetOnSQLite() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let db = try Database(.sqlite(path: dir + "/outbox.sqlite"), logger: TestDatabases.logger)
    do {
      try await self.runProducersAndAConsumer(db)
    } catch {
      try? await db.shutdown()
      throw error
    }
    try await db.shutdown()
  }

  /// Eight producers append and then hold their transaction open for a random moment (so that
  /// without serialization later offsets would often commit first); one consumer polls.
  private func runProducersAndAConsumer(_ db: Database) async throws {
    try await Migrator(service: "outbox-test", migrations: [Outbox.migration(version: 1)]).migrate(db)
    let finished = Atomic<Bool>(false)
    let consumer = Task { () -> [Int64] in
      var seen: [Int64] = []
      var last: Int64 = 0
      while true {
        let done = finished.load(ordering: .acquiring)
        let events = try await db.read { try await Outbox.read(after: last, limit: 1000, in: $0) }
        seen += events.map(\.offset)
        last = events.last?.offset ?? last
        if done && events.isEmpty { return seen }
        if events.isEmpty { try await Task.sleep(for: .microseconds(200)) }
      }
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
      for producer in 0..<Self.producers {
        group.addTask {
          for i in 0..<Self.eventsPerProducer {
            try await db.transaction { uow in
              try await Outbox.append(
                type: "test.event", key: "p\(producer)", keyVersion: Int64(i + 1), payload: Data([UInt8(producer)]), in: uow)
              try await Task.sleep(for: .microseconds(Int.random(in: 0...3000)))
            }
          }
        }
      }
      try await group.waitForAll()
    }
    finished.store(true, ordering: .releasing)
    let consumed = try await consumer.value
    let stored = try await db.read { try await Outbox.read(after: 0, limit: 100_000, in: $0) }.map(\.offset)
    XCTAssertEqual(stored.count, Self.producers * Self.eventsPerProducer)
    let skipped = Set(stored).subtracting(consumed)
    XCTAssertEqual(consumed, stored, "the consumer skipped \(skipped.count) offsets: \(skipped.sorted().prefix(10))")
  }
}
