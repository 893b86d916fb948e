import AuthService
import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import SQLKit
import ServiceKit
import ServiceLifecycle
import Storage
import TestSupport
import XCTest

/// A producer service whose whole wiring is its outbox and one topic: the feed is what the
/// assembly adds for `ModuleParts.feeds`.
enum LedgerModule: ServiceModule {
  static let name = "ledger"
  static let summary = "A producer for the event tests."
  static let protoServices = ["events.v1.EventFeed"]
  static let defaultPorts = ServicePorts(framed: 0, grpc: 0, admin: 0)
  static let dependsOn = ["auth"]
  static let topic = EventTopic(name: "entries", types: ["entry.added"], resync: "the ledger's own listing")
  static var migrations: [Migration] {
    [Outbox.migration(version: 1), OutboxRetention.migration(version: 2), JobQueue.migration(version: 3)]
  }
  static func configureHost(_ config: inout ServiceHost.Config) {
    config.readinessInterval = .milliseconds(100)
    config.rateLimit = nil
  }
  static func make(_ context: ModuleContext<NoOptions>) async throws -> ModuleParts {
    ModuleParts(services: [], feeds: [Self.topic])
  }
}

/// The auth service (service principals), a ledger producer and the consuming side's
/// database, in one temporary folder.
final class EventHarness: Sendable {
  let dir: String
  let auth: AuthServer
  private let authRun: Task<Void, any Error>
  let authAddress: String
  let log = CapturedLog()

  static let clients = ["ledger", "tally", "tally2"]

  init() async throws {
    self.dir = try TestDatabases.temporaryDirectory()
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = Self.clients
    var authHost = ServiceHost.Config()
    authHost.rateLimit = nil
    self.auth = try await AuthServer.make(options: options, host: authHost, logSink: CapturedLog().sink)
    let host = self.auth.host
    self.authRun = Task { try await host.run() }
    self.authAddress = try await host.addresses().framed
  }

  func shutdown() async {
    self.auth.host.beginGracefulShutdown()
    _ = await self.authRun.result
    try? FileManager.default.removeItem(atPath: self.dir)
  }

  func remoteAuth(_ client: String) throws -> RemoteAuthConfig {
    let secret = try String(contentsOfFile: LocalSecretFile.clientSecretPath(dataDir: self.dir, service: client), encoding: .utf8)
    return RemoteAuthConfig(targets: [self.authAddress], clientID: client, clientSecret: Secret(secret))
  }

  /// A running ledger; `port` 0 for a new one, or the port of the one it replaces.
  func startLedger(storage: StorageOptions, port: Int = 0) async throws -> RunningLedger {
    var config = ServiceAssembly.hostDefaults(of: LedgerModule.self)
    config.framedPort = port
    config.grpcPort = 0
    config.adminPort = 0
    config.grace = .seconds(1)
    let (host, database) = try await ServiceAssembly.host(
      LedgerModule.self, options: try NoOptions(layers: ConfigLayers(environment: [:])), host: config, storage: storage,
      remoteAuth: try self.remoteAuth("ledger"),
      logSink: self.log.sink)
    let run = Task { try await host.run() }
    let address = try await host.addresses().framed
    return RunningLedger(host: host, database: try XCTUnwrap(database), run: run, address: address)
  }

  /// A consumer of the ledger's topic with a client of its own to the ledger.
  func consumer(
    of ledger: String, mode: (Database?) -> EventConsumer.Mode, client: String = "tally", database: Database? = nil,
    config: EventConsumer.Config = EventConsumer.Config()
  ) throws -> RunningConsumer {
    let remote = try RemoteAuth(config: try self.remoteAuth(client))
    let ledgerClient = try ServiceClient(ServiceClientConfig(replicas: [ledger]))
    let feed = RemoteEventFeed(producer: "ledger", topic: LedgerModule.topic.name, client: ledgerClient.client, credentials: remote.credentials)
    let consumer = EventConsumer(
      feed: feed, mode: mode(database), config: config, logger: Logger(label: "tally") { JSONLogHandler(label: $0, level: .info, sink: self.log.sink) })
    return RunningConsumer(consumer: consumer, services: [remote.client, ledgerClient, consumer])
  }

  /// The consuming side's database: offsets, key versions, dead letters, and `effects`.
  static func tallyDatabase(_ location: DatabaseLocation) async throws -> Database {
    let db = try Database(location, logger: TestDatabases.logger)
    let migrator = try Migrator(
      service: "tally",
      migrations: [
        ConsumerStore.migration(version: 1),
        Migration(version: 2, name: "effects") { _ in [#"CREATE TABLE effects ("offset" BIGINT NOT NULL, key TEXT NOT NULL, version BIGINT NOT NULL)"#] },
      ])
    _ = try await migrator.migrate(db)
    return db
  }

  /// Appends `count` entries in one unit of work each; keys cycle over `keys`.
  static func append(_ count: Int, to db: Database, keys: Int = 1_000_000, startingAt start: Int = 0, payload: String = "") async throws {
    for index in start..<(start + count) {
      try await db.transaction { uow in
        try await Outbox.append(
          type: "entry.added", key: "k\(index % keys)", keyVersion: Int64(index + 1), payload: Data((payload.isEmpty ? "e\(index)" : payload).utf8),
          in: uow)
      }
    }
  }

  /// The durable handler that records each effect in `effects`; `poison` payloads fail.
  static func recording(_ db: Database, group: String = "tally.entries") -> EventConsumer.Mode {
    .durable(
      EventConsumer.Durable(
        group: group, database: db,
        apply: { event, uow in
          if event.payload == Data("poison".utf8) { throw TestFailure("poisoned event \(event.offset)") }
          try await uow.write(
            #"INSERT INTO effects ("offset", key, version) VALUES (\#(bind: event.offset), \#(bind: event.key), \#(bind: event.keyVersion))"#)
        },
        resync: {}))
  }

  static func effects(_ db: Database) async throws -> (rows: Int, distinct: Int) {
    try await db.read { uow in
      let row = try await uow.sql.raw(#"SELECT COUNT(*) AS n, COUNT(DISTINCT "offset") AS d FROM effects"#).first()
      return (try row?.decode(column: "n", as: Int.self) ?? 0, try row?.decode(column: "d", as: Int.self) ?? 0)
    }
  }

  /// Fails unless `condition` holds within `timeout`.
  static func assertEventually(
    within timeout: Duration = .seconds(10), file: StaticString = #filePath, line: UInt = #line, _ condition: () async throws -> Bool
  ) async throws {
    let held = try await Self.eventually(within: timeout, condition)
    XCTAssertTrue(held, "condition not met within \(timeout)", file: file, line: line)
  }

  /// Polls `condition` every 20 ms until it holds or `timeout` passes.
  static func eventually(within timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if try await condition() { return true }
      try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
  }
}

struct TestFailure: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

struct RunningLedger: Sendable {
  let host: ServiceHost
  let database: Database
  let run: Task<Void, any Error>
  let address: String
  var port: Int { Int(self.address.split(separator: ":").last!)! }

  func stop() async {
    self.host.beginGracefulShutdown()
    _ = await self.run.result
  }
}

/// A consumer and the clients it needs, run in one service group.
final class RunningConsumer: Sendable {
  let consumer: EventConsumer
  private let group: ServiceGroup
  private let run: Task<Void, any Error>

  init(consumer: EventConsumer, services: [any Service]) {
    self.consumer = consumer
    let group = ServiceGroup(
      configuration: ServiceGroupConfiguration(
        services: services.map { .init(service: $0) }, logger: Logger(label: "consumer") { _ in SwiftLogNoOpLogHandler() }))
    self.group = group
    self.run = Task { try await group.run() }
  }

  func stop() async {
    await self.group.triggerGracefulShutdown()
    _ = await self.run.result
  }

  /// Ends it abruptly: cancelled, nothing graceful.
  func kill() async {
    self.run.cancel()
    _ = await self.run.result
  }
}

func assertEventually(
  within timeout: Duration = .seconds(10), file: StaticString = #filePath, line: UInt = #line, _ condition: () async throws -> Bool
) async throws {
  try await EventHarness.assertEventually(within: timeout, file: file, line: line, condition)
}
