import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import SQLKit
import ServiceKit
import Storage
import Synchronization
import TestSupport
import XCTest

/// The consuming side: durable consumers over a real feed, restarts of either side, dead
/// letters, retention resyncs and the lease.
final class EventConsumerTests: XCTestCase {
  /// N events while the consumer restarts 3 times and the producer 3 times: every effect
  /// exactly once.
  func testRestartsOfEitherSideResumeWithoutGapsOrDoubleEffects() async throws {
    let harness = try await EventHarness()
    let storage = StorageOptions(dataDir: harness.dir)
    let tally = try await EventHarness.tallyDatabase(.sqlite(path: harness.dir + "/tally.sqlite"))
    var ledger = try await harness.startLedger(storage: storage)
    let port = ledger.port
    let total = 300
    var consumer = try harness.consumer(of: ledger.address, mode: { _ in EventHarness.recording(tally) })
    var appended = 0
    for round in 0..<6 {
      try await EventHarness.append(50, to: ledger.database, startingAt: appended)
      appended += 50
      try await Task.sleep(for: .milliseconds(100))
      if round % 2 == 0 {
        await consumer.stop()
        consumer = try harness.consumer(of: ledger.address, mode: { _ in EventHarness.recording(tally) })
      } else {
        await ledger.stop()
        ledger = try await harness.startLedger(storage: storage, port: port)
      }
    }
    XCTAssertEqual(appended, total)
    let caughtUp = try await EventHarness.eventually(within: .seconds(20)) {
      try await EventHarness.effects(tally).rows >= total
    }
    let progress = try await EventHarness.effects(tally)
    XCTAssertTrue(caughtUp, "the consumer caught up: \(progress)")
    try await Task.sleep(for: .milliseconds(300))
    let effects = try await EventHarness.effects(tally)
    XCTAssertEqual(effects.rows, total, "each event's effect exactly once")
    XCTAssertEqual(effects.distinct, total)
    let offset = try await tally.read { try await ConsumerStore.offset(group: "tally.entries", in: $0) }
    let head = try await ledger.database.read { try await Outbox.head(in: $0) }
    XCTAssertEqual(offset, head, "the stored offset is the producer's head")
    XCTAssertEqual(consumer.consumer.statistics.lagOffsets, 0)
    await consumer.stop()
    await ledger.stop()
    try await tally.shutdown()
    await harness.shutdown()
  }

  func testAFailingEventIsParkedThenReplayedOnRequestAndOldVersionsNeverWin() async throws {
    let harness = try await EventHarness()
    let tally = try await EventHarness.tallyDatabase(.sqlite(path: harness.dir + "/tally.sqlite"))
    let ledger = try await harness.startLedger(storage: StorageOptions(dataDir: harness.dir))
    let failing = Mutex<Set<String>>(["k-bad", "k-old"])
    let mode = EventConsumer.Mode.durable(
      EventConsumer.Durable(
        group: "tally.entries", database: tally,
        apply: { event, uow in
          if failing.withLock({ $0.contains(event.key) }) { throw TestFailure("cannot apply \(event.key) yet") }
          try await uow.write(
            #"INSERT INTO effects ("offset", key, version) VALUES (\#(bind: event.offset), \#(bind: event.key), \#(bind: event.keyVersion))"#)
        }, resync: {}))
    var config = EventConsumer.Config()
    config.retry = RetrySchedule(initial: .milliseconds(5), maximum: .milliseconds(20), attempts: 3)
    config.replayInterval = .milliseconds(50)
    let consumer = try harness.consumer(of: ledger.address, mode: { _ in mode }, config: config)
    try await ledger.database.transaction { uow in
      try await Outbox.append(type: "entry.added", key: "k-1", keyVersion: 1, payload: Data(), in: uow)
    }
    try await ledger.database.transaction { uow in
      try await Outbox.append(type: "entry.added", key: "k-bad", keyVersion: 1, payload: Data(), in: uow)
    }
    try await ledger.database.transaction { uow in
      try await Outbox.append(type: "entry.added", key: "k-old", keyVersion: 5, payload: Data(), in: uow)
    }
    try await ledger.database.transaction { uow in
      try await Outbox.append(type: "entry.added", key: "k-2", keyVersion: 1, payload: Data(), in: uow)
    }
    // Two parked, the feed went on past them.
    try await assertEventually { try await EventHarness.effects(tally).rows == 2 }
    let parked = try await tally.read { try await ConsumerStore.deadLetters(state: .parked, in: $0) }
    XCTAssertEqual(parked.map(\.event.key), ["k-bad", "k-old"])
    XCTAssertEqual(parked.first?.attempts, 3)
    XCTAssertTrue(parked.first?.error.contains("cannot apply k-bad yet") ?? false)
    XCTAssertEqual(consumer.consumer.statistics.parked, 2)

    // A newer version of k-old is applied meanwhile; then the cause is fixed and both replayed.
    failing.withLock { $0 = [] }
    try await ledger.database.transaction { uow in
      try await Outbox.append(type: "entry.added", key: "k-old", keyVersion: 6, payload: Data(), in: uow)
    }
    try await assertEventually { try await EventHarness.effects(tally).rows == 3 }
    let marked = try await tally.transaction { try await ConsumerStore.requestRetry(id: nil, in: $0) }
    XCTAssertEqual(marked, 2)
    try await assertEventually {
      try await tally.read { try await ConsumerStore.deadLetters(state: .resolved, in: $0) }.count == 2
    }
    let versions = try await tally.read { uow in
      try await uow.sql.raw("SELECT key, version FROM effects ORDER BY key, version").all().map {
        "\(try $0.decode(column: "key", as: String.self))@\(try $0.decode(column: "version", as: Int64.self))"
      }
    }
    XCTAssertEqual(versions, ["k-1@1", "k-2@1", "k-bad@1", "k-old@6"], "the replayed k-bad applied; the old k-old@5 had no effect")
    await consumer.stop()
    await ledger.stop()
    try await tally.shutdown()
    await harness.shutdown()
  }

  func testPurgedOffsetsAreOutOfRangeAndTheConsumerResyncsFromTheHead() async throws {
    let harness = try await EventHarness()
    let ledger = try await harness.startLedger(storage: StorageOptions(dataDir: harness.dir))
    // The host keeps the hourly retention job of its feeds scheduled.
    try await assertEventually {
      try await ledger.database.read { try await JobQueue.counts(in: $0) }.contains { $0.kind == OutboxRetentionJob.kind }
    }
    let old = OutboxRetention.nowMs() - 40 * 86_400_000
    try await ledger.database.transaction { uow in
      for index in 0..<20 {
        try await Outbox.append(type: "entry.added", key: "k\(index)", keyVersion: 1, payload: Data(), timeMs: old, in: uow)
      }
    }
    // A group acknowledged 10; the 7-day window purges up to it; newer rows stay.
    try await withFeed(harness, ledger.address) { feed in
      try await feed.acknowledge(
        .with {
          $0.topic = "entries"; $0.consumerGroup = "slow"; $0.offset = 10
        })
    }
    var policy = OutboxRetention.Policy()
    policy.maximumWindow = .seconds(365 * 86_400)
    let purged = try await ledger.database.transaction { try await OutboxRetention.purge(topics: [LedgerModule.topic], policy: policy, in: $0) }
    XCTAssertEqual(purged, 10)
    // Past the maximum window, unacknowledged rows go too — all but the head.
    let more = try await ledger.database.transaction { try await OutboxRetention.purge(topics: [LedgerModule.topic], in: $0) }
    XCTAssertEqual(more, 9)
    let horizon = try await ledger.database.read { try await OutboxRetention.horizon(topic: "entries", in: $0) }
    XCTAssertEqual(horizon, 19)
    try await withFeed(harness, ledger.address) { feed in
      await assertCode(.outOfRange) {
        try await feed.subscribe(
          .with {
            $0.topic = "entries"; $0.afterOffset = 5
          }
        ) { for try await _ in $0 {} }
      }
    }

    // A durable consumer at offset 0 resyncs, then goes on from the head.
    let tally = try await EventHarness.tallyDatabase(.sqlite(path: harness.dir + "/tally.sqlite"))
    let resynced = Mutex(0)
    let mode = EventConsumer.Mode.durable(
      EventConsumer.Durable(
        group: "tally.entries", database: tally,
        apply: { event, uow in
          try await uow.write(
            #"INSERT INTO effects ("offset", key, version) VALUES (\#(bind: event.offset), \#(bind: event.key), \#(bind: event.keyVersion))"#)
        }, resync: { resynced.withLock { $0 += 1 } }))
    let consumer = try harness.consumer(of: ledger.address, mode: { _ in mode })
    try await assertEventually { resynced.withLock { $0 } == 1 }
    try await EventHarness.append(3, to: ledger.database, startingAt: 100)
    try await assertEventually { try await EventHarness.effects(tally).rows == 3 }
    let stored = try await tally.read { try await ConsumerStore.offset(group: "tally.entries", in: $0) }
    XCTAssertEqual(stored, 23)
    XCTAssertEqual(consumer.consumer.statistics.resyncs, 1)
    await consumer.stop()
    await ledger.stop()
    try await tally.shutdown()
    await harness.shutdown()
  }

  /// Two replicas of a group on one PostgreSQL: one consumes; when it dies the other takes
  /// over within 5 s, and no event's effect is lost or doubled.
  func testLeaseFailoverOnPostgreSQL() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL")
    }
    let harness = try await EventHarness()
    let ledger = try await harness.startLedger(storage: StorageOptions(dataDir: harness.dir))
    try await TestDatabases.withPostgres(url) { scratch in
      let tally = try await EventHarness.tallyDatabase(scratch.location)
      var config = EventConsumer.Config()
      config.lease.pollInterval = .milliseconds(200)
      let first = try harness.consumer(of: ledger.address, mode: { _ in EventHarness.recording(tally) }, config: config)
      try await assertEventually { first.consumer.statistics.holdsLease }
      let second = try harness.consumer(of: ledger.address, mode: { _ in EventHarness.recording(tally) }, client: "tally2", config: config)
      try await EventHarness.append(100, to: ledger.database)
      try await assertEventually { try await EventHarness.effects(tally).rows == 100 }
      XCTAssertFalse(second.consumer.statistics.holdsLease, "one replica consumes at a time")
      XCTAssertEqual(second.consumer.statistics.applied, 0)

      // The active replica dies mid-run; events keep coming.
      let producing = Task { try await EventHarness.append(100, to: ledger.database, startingAt: 100) }
      try await Task.sleep(for: .milliseconds(50))
      let killedAt = ContinuousClock.now
      await first.kill()
      try await assertEventually(within: .seconds(5)) { second.consumer.statistics.holdsLease }
      XCTAssertLessThan(ContinuousClock.now - killedAt, .seconds(5), "taken over within 5 s")
      try await producing.value
      try await assertEventually { try await EventHarness.effects(tally).rows >= 200 }
      try await Task.sleep(for: .milliseconds(200))
      let effects = try await EventHarness.effects(tally)
      XCTAssertEqual(effects.rows, 200, "none lost, none doubled")
      XCTAssertEqual(effects.distinct, 200)
      await second.stop()
      try await tally.shutdown()
    }
    await ledger.stop()
    await harness.shutdown()
  }
}
