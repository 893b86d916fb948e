import AuthService
import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import ServiceKit
import Storage
import TestSupport
import XCTest

@testable import QuizService

/// Authors' display names across the two real services: filled at creation through auth's
/// BatchGetUsers, a rename applied by the consumer's repository call reaching cached reads,
/// and the backfill waiting for auth without holding up the quiz service's start.
final class QuizAuthorNameEndToEndTests: XCTestCase {
  func testTheNameComesFromAuthAtCreationAndARenameReachesCachedReads() async throws {
    let harness = try await QuizHarness.start()
    do {
      _ = try await harness.authAPI.register(
        .with {
          $0.email = "wanda@example.com"
          $0.password = QuizHarness.password
          $0.displayName = "Wanda Writer"
        })
      let wanda = try await harness.user("wanda@example.com")
      let created = try await harness.quiz.createQuiz(.with { $0.quiz = Sample.quiz("Named") }, metadata: wanda.metadata)
      XCTAssertEqual(created.authorDisplayName, "Wanda Writer")
      XCTAssertFalse(created.authorDisplayName.contains("@"))
      let published = try await harness.quiz.publishQuiz(
        .with {
          $0.id = created.id
          $0.etag = created.etag
        }, metadata: wanda.metadata)
      let listRequest = Quiz_V1_ListQuizzesRequest.with { $0.filter = "author_id = \"\(wanda.id)\"" }
      // Anonymous reads, now cached.
      for _ in 0..<2 {
        let read = try await harness.quiz.getQuiz(.with { $0.id = created.id })
        XCTAssertEqual(read.authorDisplayName, "Wanda Writer")
        let list = try await harness.quiz.listQuizzes(listRequest)
        XCTAssertEqual(list.quizzes.map(\.authorDisplayName), ["Wanda Writer"])
      }

      // Renamed in auth; the quiz module's consumer of auth's "users" feed applies it (the
      // version rule: once, and a repeat of the same version changes nothing).
      _ = try await harness.authAPI.updateProfile(.with { $0.displayName = "Wanda W." }, metadata: wanda.metadata)
      let profile = try await harness.authAPI.batchGetUsers(.with { $0.ids = [wanda.id] }, metadata: wanda.metadata).users
      XCTAssertEqual(profile.map(\.version), [2])
      // Within 5 s (here: as soon as the notification is delivered) cached reads show it.
      var read = try await harness.quiz.getQuiz(.with { $0.id = created.id })
      var list = try await harness.quiz.listQuizzes(listRequest)
      let deadline = ContinuousClock.now + .seconds(5)
      while read.authorDisplayName != "Wanda W." || list.quizzes.first?.authorDisplayName != "Wanda W.", ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(50))
        read = try await harness.quiz.getQuiz(.with { $0.id = created.id })
        list = try await harness.quiz.listQuizzes(listRequest)
      }
      XCTAssertEqual(read.authorDisplayName, "Wanda W.")
      XCTAssertEqual(list.quizzes.map(\.authorDisplayName), ["Wanda W."])
      XCTAssertEqual(read.etag, published.etag, "a rename is not a content change")
      let db = try Database(.sqlite(path: harness.quizDatabasePath), logger: TestDatabases.logger)
      let repeated = try await db.transaction { uow in
        try await QuizRepository().applyAuthorRename(authorID: wanda.id, displayName: "Wanda W.", version: 2, in: uow)
      }
      try await db.shutdown()
      XCTAssertEqual(repeated, 0, "the consumer applied version 2 already")
    } catch {
      await harness.stop()
      throw error
    }
    await harness.stop()
  }

  func testTheQuizServiceStartsWhileAuthIsDownAndBackfillsOnceItIsBack() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = ["quiz"]
    var authConfig = ServiceHost.Config()
    authConfig.rateLimit = nil

    // Auth runs once: a user with a name, and the quiz client's secret on disk.
    let first = try await Self.startAuth(options, authConfig)
    let authAddress = try await first.server.host.addresses().framed
    let olga = try await first.api.register(
      .with {
        $0.email = "olga@example.com"
        $0.password = QuizHarness.password
        $0.displayName = "Olga"
      }
    ).user
    await first.stop()

    // A quiz stored before names existed.
    let quizDB = try Database(.sqlite(path: dir + "/quiz.sqlite"), logger: TestDatabases.logger)
    try await QuizRepositoryTests.migrate(quizDB)
    try await quizDB.transaction { uow in try await QuizRepository().insert(QuizRepositoryTests.record(1, author: olga.id), in: uow) }

    // The quiz service starts and serves with auth down; the backfill waits.
    let log = CapturedLog()
    let layers = try ConfigLayers(
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: "quiz")],
      flags: ["auth-target": authAddress, "data-dir": dir, "framed-port": "0", "grpc-port": "0", "admin-port": "0"])
    let quizHost = try await ServiceAssembly.host(QuizModule.self, layers: layers, logSink: log.sink)
    let quizRun = Task { try await quizHost.run() }
    var second: (server: AuthServer, api: Auth_V1_AuthService.Client<FramedClientTransport>, stop: () async -> Void)?
    do {
      let quizAddress = try await quizHost.addresses().framed
      let client = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(quizAddress)!])))
      let connections = Task { try await client.runConnections() }
      let missing = await statusCode { _ = try await Quiz_V1_QuizService.Client(wrapping: client).getQuiz(.with { $0.id = "qz_none" }) }
      XCTAssertEqual(missing, .notFound, "serving")
      client.beginGracefulShutdown()
      _ = await connections.result
      let waitDeadline = ContinuousClock.now + .seconds(10)
      while !log.rawLines().joined().contains("data migration failed; retrying"), ContinuousClock.now < waitDeadline {
        try await Task.sleep(for: .milliseconds(50))
      }
      XCTAssertTrue(log.rawLines().joined().contains("data migration failed; retrying"))
      let before = try await quizDB.read { uow in try await QuizRepository().find(id: "qz_000001", load: .row, in: uow) }
      XCTAssertEqual(before?.authorDisplayName, "")

      // Auth is back on the same address: the backfill finishes.
      var config = authConfig
      config.framedPort = Int(authAddress.split(separator: ":").last!)!
      second = try await Self.startAuth(options, config)
      var after = before
      let deadline = ContinuousClock.now + .seconds(40)
      while after?.authorDisplayName != "Olga", ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(100))
        after = try await quizDB.read { uow in try await QuizRepository().find(id: "qz_000001", load: .row, in: uow) }
      }
      XCTAssertEqual(after?.authorDisplayName, "Olga")
      XCTAssertEqual(after?.authorNameVersion, 1)
    } catch {
      XCTFail("\(error)")
    }
    quizHost.beginGracefulShutdown()
    _ = await quizRun.result
    await second?.stop()
    try await quizDB.shutdown()
  }

  static func startAuth(_ options: AuthServerOptions, _ config: ServiceHost.Config) async throws -> (
    server: AuthServer, api: Auth_V1_AuthService.Client<FramedClientTransport>, stop: () async -> Void
  ) {
    let server = try await AuthServer.make(options: options, host: config, logSink: CapturedLog().sink)
    let run = Task { try await server.host.run() }
    let address = try await server.host.addresses().framed
    let client = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(address)!])))
    let connections = Task { try await client.runConnections() }
    return (
      server, Auth_V1_AuthService.Client(wrapping: client),
      {
        client.beginGracefulShutdown()
        server.host.beginGracefulShutdown()
        _ = await connections.result
        _ = await run.result
      }
    )
  }
}
