import Foundation
import SQLKit
import Storage
import Synchronization
import TestSupport
import XCTest

/// Change notifications: delivered after the writing transaction commits and never when it
/// rolls back, on SQLite (in-process) and PostgreSQL (NOTIFY/LISTEN); a lost LISTEN
/// connection yields `.reset` and then delivery resumes.
final class ChangeNotifierTests: XCTestCase {
  /// Collects what a subscription receives.
  final class Received: Sendable {
    private final class Items: Sendable {
      let list = Mutex<[ChangeNotification]>([])
    }
    private let items = Items()
    private let task: Task<Void, Never>

    init(_ stream: AsyncStream<ChangeNotification>) {
      let items = self.items
      self.task = Task {
        for await item in stream { items.list.withLock { $0.append(item) } }
      }
    }

    var all: [ChangeNotification] { self.items.list.withLock { $0 } }
    var payloads: [String] {
      self.all.compactMap {
        if case .payload(let p) = $0 { return p }
        return nil
      }
    }

    /// Waits until `condition` holds, up to `timeout`; whether it did.
    func wait(timeout: Duration = .seconds(10), until condition: ([ChangeNotification]) -> Bool) async -> Bool {
      let deadline = ContinuousClock.now + timeout
      while ContinuousClock.now < deadline {
        if condition(self.all) { return true }
        try? await Task.sleep(for: .milliseconds(10))
      }
      return condition(self.all)
    }

    func cancel() { self.task.cancel() }
  }

  struct Rollback: Error {}

  private func postgresURL() throws -> String {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL to run the PostgreSQL notifier tests")
    }
    return url
  }

  /// Notify inside a transaction: nothing before COMMIT, the payload after it; a rolled
  /// back notification never arrives (the next committed one comes first).
  private func checkCommitAndRollback(_ db: Database) async throws {
    let writer = ChangeNotifier(database: db, logger: TestDatabases.logger)
    let reader = ChangeNotifier(database: db, logger: TestDatabases.logger)
    let runs = [Task { await writer.run() }, Task { await reader.run() }]
    defer { for run in runs { run.cancel() } }
    let received = Received(try reader.subscribe(channel: "test_changes"))
    let own = Received(try writer.subscribe(channel: "test_changes"))
    let others = Received(try reader.subscribe(channel: "other_channel"))
    let listening = await reader.waitUntilListening("test_changes")
    XCTAssertTrue(listening)
    let writerListening = await writer.waitUntilListening("test_changes")
    XCTAssertTrue(writerListening)

    try await db.transaction { uow in
      try await writer.notify(channel: "test_changes", payload: "first", in: uow)
      try await Task.sleep(for: .milliseconds(300))
      XCTAssertEqual(received.all, [], "\(db.dialect): delivered before COMMIT")
    }
    let first = await received.wait { $0 == [.payload("first")] }
    XCTAssertTrue(first, "\(db.dialect): \(received.all)")
    let ownFirst = await own.wait { $0 == [.payload("first")] }
    XCTAssertTrue(ownFirst, "\(db.dialect): the writer hears its own notifications")

    do {
      try await db.transaction { uow in
        try await writer.notify(channel: "test_changes", payload: "rolled back", in: uow)
        throw Rollback()
      }
    } catch is Rollback {}
    try await db.transaction { uow in try await writer.notify(channel: "test_changes", payload: "second", in: uow) }
    let second = await received.wait { $0.count >= 2 }
    XCTAssertTrue(second)
    try await Task.sleep(for: .milliseconds(200))
    XCTAssertEqual(received.payloads, ["first", "second"], "\(db.dialect): a rolled-back notification arrived")
    XCTAssertEqual(others.all, [], "\(db.dialect): another channel's subscriber heard it")

    // Closing ends the subscriptions.
    reader.close()
    let ended = Received(try reader.subscribe(channel: "test_changes"))
    try await db.transaction { uow in try await writer.notify(channel: "test_changes", payload: "after close", in: uow) }
    try await Task.sleep(for: .milliseconds(200))
    XCTAssertEqual(ended.all, [])
    XCTAssertFalse(received.payloads.contains("after close"))
    writer.close()
  }

  func testNotificationsArriveAfterCommitAndNeverOnRollback() async throws {
    try await TestDatabases.each { db in try await self.checkCommitAndRollback(db) }
  }

  func testSQLiteNotifiersOfOtherFilesDoNotHearEachOther() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = try Database(.sqlite(path: dir + "/a.sqlite"), logger: TestDatabases.logger)
    let b = try Database(.sqlite(path: dir + "/b.sqlite"), logger: TestDatabases.logger)
    let onA = Received(try ChangeNotifier(database: a, logger: TestDatabases.logger).subscribe(channel: "c"))
    let onB = Received(try ChangeNotifier(database: b, logger: TestDatabases.logger).subscribe(channel: "c"))
    let writer = ChangeNotifier(database: a, logger: TestDatabases.logger)
    try await a.transaction { uow in try await writer.notify(channel: "c", payload: "x", in: uow) }
    let arrived = await onA.wait { $0 == [.payload("x")] }
    XCTAssertTrue(arrived)
    XCTAssertEqual(onB.all, [])
    try await a.shutdown()
    try await b.shutdown()
  }

  func testChannelNamesAndPayloadSizesAreChecked() async throws {
    try await TestDatabases.each { db in
      let notifier = ChangeNotifier(database: db, logger: TestDatabases.logger)
      for bad in ["", "Upper", #"a"b"#, "semi;colon", String(repeating: "a", count: 64)] {
        XCTAssertThrowsError(try notifier.subscribe(channel: bad), bad)
      }
      do {
        try await db.transaction { uow in
          try await notifier.notify(channel: "ok", payload: String(repeating: "x", count: 8000), in: uow)
        }
        XCTFail("an 8000-byte payload was accepted")
      } catch let error as ChangeNotifierError {
        XCTAssertEqual(error, .payloadTooLarge(8000))
      }
    }
  }

  /// `pg_terminate_backend` on the LISTEN connection: subscribers get `.reset`, the notifier
  /// reconnects, LISTENs again (another `.reset`: what was sent meanwhile went unheard) and
  /// delivers again.
  func testAKilledListenConnectionResetsAndThenResumes() async throws {
    let url = try self.postgresURL()
    try await TestDatabases.withPostgres(url) { db in
      var backoff = ChangeNotifier.Backoff()
      backoff.initial = .milliseconds(50)
      let notifier = ChangeNotifier(database: db, logger: TestDatabases.logger, backoff: backoff)
      let run = Task { await notifier.run() }
      defer { run.cancel() }
      let received = Received(try notifier.subscribe(channel: "test_changes"))
      let listening = await notifier.waitUntilListening("test_changes")
      XCTAssertTrue(listening)
      try await db.transaction { uow in try await notifier.notify(channel: "test_changes", payload: "before", in: uow) }
      let before = await received.wait { $0 == [.payload("before")] }
      XCTAssertTrue(before, "\(received.all)")

      let killed = try await db.read { uow in
        try await uow.sql.raw(
          """
          SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'
          """
        ).all().count
      }
      XCTAssertEqual(killed, 1, "exactly one LISTEN connection")
      let reset = await received.wait { $0.contains(.reset) }
      XCTAssertTrue(reset, "no .reset after the connection was killed: \(received.all)")

      // Posted until one arrives: delivery resumes on the new connection.
      var resumed = false
      for attempt in 0..<100 where !resumed {
        try await db.transaction { uow in try await notifier.notify(channel: "test_changes", payload: "after \(attempt)", in: uow) }
        resumed = await received.wait(timeout: .milliseconds(100)) { $0.contains { $0 != .reset && $0 != .payload("before") } }
      }
      XCTAssertTrue(resumed, "nothing delivered after reconnecting: \(received.all)")
      let all = received.all
      let firstAfter = all.firstIndex { if case .payload(let p) = $0 { return p.hasPrefix("after") } else { return false } }
      let firstReset = all.firstIndex(of: .reset)
      XCTAssertNotNil(firstAfter)
      XCTAssertLessThan(firstReset ?? .max, firstAfter ?? -1, ".reset comes before what arrives on the new connection: \(all)")
      notifier.close()
      await run.value
    }
  }
}
