import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import FramedTransport
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import ServiceLifecycle
import Storage
import Synchronization
import TestSupport
import XCTest

/// The producer's side: `events.v1.EventFeed` over a real ledger host, called as a service
/// principal of the real auth service.
final class EventFeedTests: XCTestCase {
  func testReplaysFromAnOffsetThenPushesNewEventsAsTheyCommit() async throws {
    let harness = try await EventHarness()
    let storage = StorageOptions(dataDir: harness.dir)
    // Committed while no feed runs: the feed serves from the table, nothing is "published".
    let early = try Database(storage.location(service: "ledger"), logger: TestDatabases.logger)
    _ = try await Migrator(service: "ledger", migrations: LedgerModule.migrations).migrate(early)
    try await EventHarness.append(10, to: early)
    try await early.shutdown()

    let ledger = try await harness.startLedger(storage: storage)
    try await withFeed(harness, ledger.address) { feed in
      let received = Mutex<[Events_V1_SubscribeResponse]>([])
      let subscription = Task {
        try await feed.subscribe(
          .with {
            $0.topic = "entries"; $0.afterOffset = 3
          }
        ) { messages in
          for try await message in messages { received.withLock { $0.append(message) } }
        }
      }
      try await assertEventually { received.withLock { $0.flatMap(\.events).count } == 7 }
      let first = try XCTUnwrap(received.withLock { $0.first })
      XCTAssertEqual(first.headOffset, 10, "the first message reports the head")
      XCTAssertEqual(received.withLock { $0.flatMap(\.events).map(\.offset) }, Array(4...10))

      // Live: woken by the commit, well before the 5 s poll would have found it.
      let start = ContinuousClock.now
      try await EventHarness.append(5, to: ledger.database, startingAt: 10)
      try await assertEventually(within: .seconds(3)) { received.withLock { $0.flatMap(\.events).count } == 12 }
      XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
      let events = received.withLock { $0.flatMap(\.events) }
      XCTAssertEqual(events.map(\.offset), Array(4...15), "in offset order, no gap, no duplicate")
      XCTAssertEqual(events.last?.type, "entry.added")
      XCTAssertEqual(events.last?.key, "k14")
      XCTAssertEqual(events.last?.keyVersion, 15)
      XCTAssertEqual(events.last?.payload, Data("e14".utf8))
      subscription.cancel()
      _ = await subscription.result
    }
    await ledger.stop()
    await harness.shutdown()
  }

  func testUnknownTopicsOffsetsPastTheHeadAndNonServiceCallersAreRefused() async throws {
    let harness = try await EventHarness()
    let ledger = try await harness.startLedger(storage: StorageOptions(dataDir: harness.dir))
    try await EventHarness.append(3, to: ledger.database)
    try await withFeed(harness, ledger.address) { feed in
      await assertCode(.notFound) { try await feed.subscribe(.with { $0.topic = "nope" }) { for try await _ in $0 {} } }
      await assertCode(.outOfRange) {
        try await feed.subscribe(
          .with {
            $0.topic = "entries"; $0.afterOffset = 4
          }
        ) { for try await _ in $0 {} }
      }
      await assertCode(.invalidArgument) {
        try await feed.subscribe(
          .with {
            $0.topic = "entries"; $0.consumerGroup = "Bad Group!"
          }
        ) { for try await _ in $0 {} }
      }
      await assertCode(.outOfRange) {
        try await feed.acknowledge(
          .with {
            $0.topic = "entries"; $0.consumerGroup = "g"; $0.offset = 9
          })
      }
      // Negative offsets are malformed, not out of range.
      var negative = Events_V1_SubscribeRequest()
      negative.topic = "entries"
      negative.afterOffset = -1
      await assertCode(.invalidArgument) { try await feed.subscribe(negative) { for try await _ in $0 {} } }
      var negativeAck = Events_V1_AcknowledgeRequest()
      negativeAck.topic = "entries"
      negativeAck.consumerGroup = "g"
      negativeAck.offset = -1
      await assertCode(.invalidArgument) { try await feed.acknowledge(negativeAck) }
    }
    // No token, and a user's token: only service principals read feeds.
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(ledger.address)!]))
    try await withGRPCClient(transport: transport) { grpc in
      let client = Events_V1_EventFeed.Client(wrapping: grpc)
      await assertCode(.unauthenticated) { try await client.subscribe(.with { $0.topic = "entries" }) { for try await _ in $0.messages {} } }
      let authTransport = try FramedClientTransport(config: .init(targets: [FramedTarget(harness.authAddress)!]))
      try await withGRPCClient(transport: authTransport) { authGRPC in
        let auth = Auth_V1_AuthService.Client(wrapping: authGRPC)
        _ = try await auth.register(
          .with {
            $0.email = "eve@example.com"; $0.password = "a good long password"; $0.displayName = "Eve"
          })
        let token = try await auth.login(
          .with {
            $0.email = "eve@example.com"; $0.password = "a good long password"
          }
        ).accessToken
        await assertCode(.permissionDenied) {
          try await client.subscribe(.with { $0.topic = "entries" }, metadata: ["authorization": .string("Bearer \(token)")]) {
            for try await _ in $0.messages {}
          }
        }
      }
    }
    await ledger.stop()
    await harness.shutdown()
  }

  func testASlowConsumerLagsWithoutTheProducerBufferingItsBacklog() async throws {
    let harness = try await EventHarness()
    let ledger = try await harness.startLedger(storage: StorageOptions(dataDir: harness.dir))
    // 4,000 events of 4 KiB: 16 MiB of backlog.
    let payload = String(repeating: "x", count: 4096)
    try await ledger.database.transaction { uow in
      for index in 0..<4000 {
        try await Outbox.append(type: "entry.added", key: "k\(index)", keyVersion: 1, payload: Data(payload.utf8), in: uow)
      }
    }
    let addresses = try await ledger.host.addresses()
    let admin = try XCTUnwrap(addresses.admin)
    try await withFeed(harness, ledger.address) { feed in
      let (gate, open) = AsyncStream.makeStream(of: Void.self)
      let received = Mutex(0)
      let subscription = Task {
        try await feed.subscribe(.with { $0.topic = "entries" }) { messages in
          var iterator = messages.makeAsyncIterator()
          // Read the head message and one batch, then stop reading until the gate opens.
          for _ in 0..<2 {
            let message = try await iterator.next()
            received.withLock { $0 += message?.events.count ?? 0 }
          }
          for await _ in gate { break }
          while let message = try await iterator.next() {
            received.withLock { $0 += message.events.count }
            if received.withLock({ $0 }) == 4000 { return }
          }
        }
      }
      try await Task.sleep(for: .seconds(1))
      let sent = try await metric("event_feed_events_sent_total", admin)
      XCTAssertLessThan(sent, 2000, "the feed stopped at the reader's flow-control window instead of reading the whole backlog")
      XCTAssertGreaterThan(sent, 0)
      open.yield()
      open.finish()
      try await subscription.value
      XCTAssertEqual(received.withLock { $0 }, 4000, "once the reader reads again, every event arrives")
    }
    await ledger.stop()
    await harness.shutdown()
  }

  func testOutboxAppendsOfARolledBackUnitOfWorkAreNeverServed() async throws {
    try await TestDatabases.each { db in
      _ = try await Migrator(service: "ledger", migrations: LedgerModule.migrations).migrate(db)
      do {
        try await db.transaction { uow in
          try await Outbox.append(type: "entry.added", key: "k", keyVersion: 1, payload: Data(), in: uow)
          throw TestFailure("the change fails after its event was appended")
        }
        XCTFail("the transaction committed")
      } catch is TestFailure {}
      try await EventHarness.append(1, to: db)
      let events = try await db.read { try await Outbox.read(after: 0, limit: 10, in: $0) }
      XCTAssertEqual(events.map(\.payload), [Data("e0".utf8)], "only the committed event exists")
      let head = try await db.read { try await Outbox.head(in: $0) }
      XCTAssertEqual(head, events.last?.offset)
    }
  }
}

/// A feed client of the "tally" service principal, with its clients running.
func withFeed(_ harness: EventHarness, _ address: String, _ body: (RemoteEventFeed<FramedClientTransport>) async throws -> Void) async throws {
  let remote = try RemoteAuth(config: try harness.remoteAuth("tally"))
  let client = try ServiceClient(ServiceClientConfig(replicas: [address]))
  let group = ServiceGroup(
    configuration: ServiceGroupConfiguration(
      services: [.init(service: remote.client), .init(service: client)], logger: Logger(label: "feed") { _ in SwiftLogNoOpLogHandler() }))
  let run = Task { try await group.run() }
  let feed = RemoteEventFeed(producer: "ledger", topic: "entries", client: client.client, credentials: remote.credentials)
  do {
    try await body(feed)
  } catch {
    await group.triggerGracefulShutdown()
    _ = await run.result
    throw error
  }
  await group.triggerGracefulShutdown()
  _ = await run.result
}

func assertCode(_ code: RPCError.Code, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
  do {
    try await body()
    XCTFail("expected \(code), got success", file: file, line: line)
  } catch let error as RPCError {
    XCTAssertEqual(error.code, code, error.message, file: file, line: line)
  } catch {
    XCTFail("expected \(code), got \(error)", file: file, line: line)
  }
}

/// The sum of a series' samples on a host's /metrics.
func metric(_ name: String, _ admin: String) async throws -> Double {
  let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(admin)/metrics")!)
  return String(decoding: data, as: UTF8.self).split(separator: "\n")
    .filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
    .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
    .reduce(0, +)
}
