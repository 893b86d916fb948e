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
      var timing = ChangeNotifier.Timing()
      timing.initialBackoff = .milliseconds(50)
      let notifier = ChangeNotifier(database: db, logger: TestDatabases.logger, timing: timing)
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

  /// A connection that goes silent without closing (a NAT or firewall dropping its state):
  /// the heartbeat notices, subscribers get `.reset`, and delivery resumes on a new
  /// connection. The LISTEN connection runs through a proxy that stops forwarding on SIGUSR1.
  func testASilentListenConnectionIsNoticedByTheHeartbeat() async throws {
    let url = try self.postgresURL()
    try await TestDatabases.withPostgres(url) { db in
      guard case .postgres(let dbURL, _) = db.location, var parts = URLComponents(string: dbURL) else { return XCTFail("not PostgreSQL") }
      let proxy = try BlackHoleProxy(upstreamHost: parts.host ?? "127.0.0.1", upstreamPort: parts.port ?? 5432)
      defer { proxy.stop() }
      parts.host = "127.0.0.1"
      parts.port = proxy.port
      let proxied = try Database(.postgres(url: parts.string!, poolSize: 1), logger: TestDatabases.logger)
      var timing = ChangeNotifier.Timing()
      timing.initialBackoff = .milliseconds(50)
      timing.heartbeatInterval = .milliseconds(200)
      timing.heartbeatTimeout = .milliseconds(300)
      let notifier = ChangeNotifier(database: proxied, logger: TestDatabases.logger, timing: timing)
      let run = Task { await notifier.run() }
      let received = Received(try notifier.subscribe(channel: "test_changes"))
      let listening = await notifier.waitUntilListening("test_changes")
      XCTAssertTrue(listening)
      try await db.transaction { uow in try await notifier.notify(channel: "test_changes", payload: "before", in: uow) }
      let before = await received.wait { $0 == [.payload("before")] }
      XCTAssertTrue(before, "\(received.all)")
      // Heartbeats keep passing while the connection works.
      try await Task.sleep(for: .milliseconds(700))
      XCTAssertEqual(received.all, [.payload("before")])

      proxy.freeze()
      let reset = await received.wait(timeout: .seconds(5)) { $0.contains(.reset) }
      XCTAssertTrue(reset, "the silent connection went unnoticed: \(received.all)")
      var resumed = false
      for attempt in 0..<100 where !resumed {
        try await db.transaction { uow in try await notifier.notify(channel: "test_changes", payload: "after \(attempt)", in: uow) }
        resumed = await received.wait(timeout: .milliseconds(100)) { $0.contains { $0 != .reset && $0 != .payload("before") } }
      }
      XCTAssertTrue(resumed, "nothing delivered on the new connection: \(received.all)")
      notifier.close()
      await run.value
      try await proxied.shutdown()

    }
  }
}

/// A TCP proxy (a python3 child process) that forwards to PostgreSQL until `freeze()`, after
/// which the connections it holds stay open but carry nothing; new ones are forwarded.
final class BlackHoleProxy {
  let port: Int
  private let process: Process
  private let control: Pipe

  /// Controlled through stdin (signals are no use: the child inherits the test process's
  /// blocked signal mask): a line "freeze" freezes, end of input exits.
  static let script = """
    import os, socket, threading, sys
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    held = []
    def control():
        for line in sys.stdin:
            if line.strip() == "freeze":
                for state in held: state[0] = True
        os._exit(0)
    threading.Thread(target=control, daemon=True).start()
    def pump(a, b, state):
        try:
            while True:
                data = a.recv(65536)
                if not data: break
                if not state[0]: b.sendall(data)
        except OSError: pass
        if not state[0]:
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
    while True:
        client, _ = srv.accept()
        upstream = socket.create_connection((sys.argv[1], int(sys.argv[2])))
        state = [False]; held.append(state)
        threading.Thread(target=pump, args=(client, upstream, state), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, state), daemon=True).start()
    """

  init(upstreamHost: String, upstreamPort: Int) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", Self.script, upstreamHost, String(upstreamPort)]
    let output = Pipe()
    let control = Pipe()
    process.standardOutput = output
    process.standardInput = control
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
      let chunk = output.fileHandleForReading.availableData
      guard !chunk.isEmpty else { break }
      line.append(chunk)
    }
    guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
      try? control.fileHandleForWriting.close()
      throw CocoaError(.fileReadCorruptFile)
    }
    self.process = process
    self.control = control
    self.port = port
  }

  func freeze() { self.control.fileHandleForWriting.write(Data("freeze\n".utf8)) }

  func stop() {
    try? self.control.fileHandleForWriting.close()
    self.process.waitUntilExit()
  }
}
