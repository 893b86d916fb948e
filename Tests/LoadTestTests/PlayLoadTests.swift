import AuthService
import Foundation
import FramedTransport
import GRPCCore
import LoadTest
import QuizService
import ScoringService
import ServiceKit
import TestSupport
import XCTest

/// `--scenario play` and `--scenario watch` against the real auth, quiz and scoring services,
/// in-process on 127.0.0.1 (test-speed scrypt), over the framed wire.
final class PlayLoadTests: XCTestCase {
  /// Auth, quiz and scoring as `quizwire up` assembles them, on free ports.
  final class Suite: Sendable {
    let dir: String
    let auth: AuthServer
    let hosts: [ServiceHost]
    let tasks: [Task<Void, any Error>]
    let authAddress: String
    let quizAddress: String
    let scoringAddress: String

    init() async throws {
      self.dir = try TestDatabases.temporaryDirectory()
      var options = AuthServerOptions(dataDir: self.dir)
      options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
      options.internalClients = ["quiz", "scoring"]
      self.auth = try await AuthServer.make(options: options, host: ServiceHost.Config(), logSink: CapturedLog().sink)
      var tasks = [Task { [auth = self.auth] in try await auth.host.run() }]
      self.authAddress = try await self.auth.host.addresses().framed
      let dir = self.dir
      let authAddress = self.authAddress
      func host<M: ServiceModule>(_ module: M.Type, _ extra: [String: String]) async throws -> ServiceHost {
        let layers = try ConfigLayers(
          environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: module.name)],
          flags: ["auth-target": authAddress, "data-dir": dir, "framed-port": "0", "grpc-port": "0", "admin-port": "0"].merging(extra) { $1 })
        let host = try await ServiceAssembly.host(module, layers: layers, logSink: CapturedLog().sink)
        tasks.append(Task { try await host.run() })
        return host
      }
      let quiz = try await host(QuizModule.self, [:])
      self.quizAddress = try await quiz.addresses().framed
      let scoring = try await host(ScoringModule.self, ["quiz-target": self.quizAddress])
      self.scoringAddress = try await scoring.addresses().framed
      self.hosts = [quiz, scoring]
      self.tasks = tasks
    }

    func stop() async {
      for host in self.hosts.reversed() { host.beginGracefulShutdown() }
      self.auth.host.beginGracefulShutdown()
      for task in self.tasks { _ = await task.result }
      try? FileManager.default.removeItem(atPath: self.dir)
    }

    func client(_ address: String) throws -> GRPCClient<FramedClientTransport> {
      GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(address)!])))
    }

    /// Provisions `users` accounts and the load quiz, then runs `body` with a scoring client.
    func withFixture<R: Sendable>(
      users: Int, _ body: @Sendable (PlayFixture, GRPCClient<FramedClientTransport>) async throws -> R
    ) async throws -> R {
      let auth = try self.client(self.authAddress)
      let quiz = try self.client(self.quizAddress)
      let scoring = try self.client(self.scoringAddress)
      return try await withThrowingTaskGroup(of: Void.self) { group in
        for c in [auth, quiz, scoring] { group.addTask { try await c.runConnections() } }
        defer { for c in [auth, quiz, scoring] { c.beginGracefulShutdown() } }
        let fixture = try await PlayFixture.provision(auth: auth, quiz: quiz, users: users, runID: LoadGenerator.makeRunID())
        return try await body(fixture, scoring)
      }
    }
  }

  func testEveryAttemptCompletesWithTheExpectedScore() async throws {
    let suite = try await Suite()
    do {
      let report = try await suite.withFixture(users: 4) { fixture, scoring in
        XCTAssertEqual(fixture.tokens.count, 4)
        XCTAssertEqual(fixture.questions.count, 5)
        var options = PlayLoadOptions()
        options.players = 20
        options.attempts = 40
        options.thinkTime = .milliseconds(5)
        options.duration = .seconds(60)
        return await PlayLoad(options: options, fixture: fixture).run(scoring: scoring, transportName: "framed")
      }
      XCTAssertEqual(report.errors, [:])
      XCTAssertEqual(report.calls, 40, "every attempt finished with the expected score")
      XCTAssertEqual(report.play?.answers, 200)
      XCTAssertEqual(report.play?.players, 20)
      XCTAssertEqual(report.play?.users, 4)
      XCTAssertGreaterThan(report.play?.peak_streams ?? 0, 1, "players play at the same time")
      XCTAssertGreaterThan(report.latency.p50_us, 0)
      XCTAssertGreaterThanOrEqual(report.latency.max_us, report.latency.p99_us)
      let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(report.jsonLine().utf8)) as? [String: Any])
      XCTAssertEqual(json["calls"] as? Int, 40)
      XCTAssertEqual(json["method"] as? String, "scoring.v1.ScoringService/Play")
      let play = try XCTUnwrap(json["play"] as? [String: Any])
      XCTAssertEqual(play["answers"] as? Int, 200)
      XCTAssertNil(play["watch"], "no watchers in the play scenario")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// The score check is real: a fixture that believes question 1 is worth one point more
  /// counts exactly the attempts that answered it correctly as `wrong_score`.
  func testAWrongExpectationIsCountedAsWrongScore() async throws {
    let suite = try await Suite()
    do {
      let (report, expectedWrong) = try await suite.withFixture(users: 2) { fixture, scoring in
        var wrong = fixture
        wrong.questions[0].points += 1
        var options = PlayLoadOptions()
        options.players = 4
        options.attempts = 8
        options.thinkTime = .zero
        options.duration = .seconds(60)
        // Player p's attempt k answers question 0 correctly unless (p + k) % 4 == 0.
        let affected = (0..<4).flatMap { p in (0..<2).map { k in (p, k) } }.filter { ($0.0 + $0.1) % 4 != 0 }.count
        return (await PlayLoad(options: options, fixture: wrong).run(scoring: scoring, transportName: "framed"), affected)
      }
      XCTAssertEqual(report.errors, ["wrong_score": expectedWrong])
      XCTAssertEqual(report.calls, 8 - expectedWrong)
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testWatchersReceiveEveryFinishedAttempt() async throws {
    let suite = try await Suite()
    do {
      // One attempt per user: each one is a new entry on the board, so every watcher's
      // last snapshot holds all ten.
      let report = try await suite.withFixture(users: 10) { fixture, scoring in
        var options = PlayLoadOptions()
        options.players = 10
        options.attempts = 10
        options.watchers = 5
        options.thinkTime = .milliseconds(5)
        options.duration = .seconds(60)
        return await PlayLoad(options: options, fixture: fixture).run(scoring: scoring, transportName: "framed")
      }
      XCTAssertEqual(report.errors, [:])
      XCTAssertEqual(report.calls, 10)
      let watch = try XCTUnwrap(report.play?.watch)
      XCTAssertEqual(watch.watchers, 5)
      XCTAssertEqual(watch.errors, [:])
      XCTAssertEqual(watch.deliveries, 50, "each of 5 watchers saw each of 10 attempts")
      XCTAssertEqual(watch.unseen_attempts, 0)
      XCTAssertEqual(watch.lagging, 0)
      XCTAssertGreaterThanOrEqual(watch.snapshots, 10, "at least the first snapshot and one update per watcher")
      XCTAssertGreaterThan(watch.final_version, 0)
      let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(report.jsonLine().utf8)) as? [String: Any])
      let watchJSON = try XCTUnwrap((json["play"] as? [String: Any])?["watch"] as? [String: Any])
      XCTAssertEqual(watchJSON["deliveries"] as? Int, 50)
      XCTAssertNotNil((watchJSON["latency"] as? [String: Any])?["p99_us"])
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }
}
