import Foundation
import Logging
import QuizwireProtos
import ServiceKit
import SQLKit
import ServiceLifecycle
import Storage
import TestSupport
import XCTest

@testable import Gateway

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// `Idempotency-Key` end to end: two gateway replicas (two `GatewayHost`s) on one gateway
/// database — a SQLite file, and a PostgreSQL database when one is available — in front of the
/// same real auth, quiz and scoring services.
final class IdempotencyTests: XCTestCase {
  func testReplayMismatchInFlightAcrossReplicasOnSQLite() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let shared = try TestDatabases.temporaryDirectory()
      defer { try? FileManager.default.removeItem(atPath: shared) }
      try await self.exercise(suite, storage: StorageOptions(dataDir: shared))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testReplayMismatchInFlightAcrossReplicasOnPostgreSQL() async throws {
    guard let url = TestDatabases.postgresURL else {
      if TestDatabases.requireAll { return XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1") }
      throw XCTSkip("set QUIZWIRE_TEST_POSTGRES_URL to run the gateway replicas on a shared PostgreSQL")
    }
    let suite = try await GatewayHarness.start()
    do {
      try await Self.withFreshPostgresURL(url) { databaseURL in
        try await self.exercise(suite, storage: StorageOptions(dataDir: suite.dir, databaseURL: Secret(databaseURL)))
      }
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// API keys own records by their hash: the same key replays, another key of the same user
  /// does not; creating an API key (a credential) is never replayed.
  func testAPIKeyCallersAndCredentialRoutes() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let token = try await suite.signIn("idem-keys@example.com", name: "Keys")
      // Two API key creations with one Idempotency-Key: two keys, neither a replay.
      let keyBody = #"{"name":"idem","scopes":["quiz:read","quiz:write"]}"#
      let first = try await suite.request("POST", "/api/v1/me/api-keys", json: keyBody, bearer: token, headers: ["Idempotency-Key": "key-1"])
      let second = try await suite.request("POST", "/api/v1/me/api-keys", json: keyBody, bearer: token, headers: ["Idempotency-Key": "key-1"])
      XCTAssertEqual(first.status, 201, String(decoding: first.body, as: UTF8.self))
      XCTAssertEqual(second.status, 201)
      XCTAssertNil(second.header("Idempotent-Replayed"))
      let (keyA, keyB) = (try XCTUnwrap(first.data?["key"] as? String), try XCTUnwrap(second.data?["key"] as? String))
      XCTAssertNotEqual(keyA, keyB, "a new secret each time: the answer was not kept")

      // Whatever the service answers a key (201, or 403 without the scope), it is final, kept
      // for that key and replayed to it alone.
      let body = #"{"title":"By key"}"#
      let byA = try await suite.request("POST", "/api/v1/quizzes", json: body, headers: ["X-API-Key": keyA, "Idempotency-Key": "k-create"])
      XCTAssertTrue([201, 403].contains(byA.status), String(decoding: byA.body, as: UTF8.self))
      let againByA = try await suite.request(
        "POST", "/api/v1/quizzes", json: body, headers: ["X-API-Key": keyA, "Idempotency-Key": "k-create"])
      XCTAssertEqual(againByA.status, byA.status)
      XCTAssertEqual(againByA.header("Idempotent-Replayed"), "true")
      XCTAssertEqual(againByA.body, byA.body)
      let byB = try await suite.request("POST", "/api/v1/quizzes", json: body, headers: ["X-API-Key": keyB, "Idempotency-Key": "k-create"])
      XCTAssertEqual(byB.status, byA.status)
      XCTAssertNil(byB.header("Idempotent-Replayed"), "another API key is another caller")
      let kept = try await suite.gateway.store.database.read { uow in
        try await uow.sql.raw("SELECT caller FROM gateway_idempotency").all().map { try $0.decode(column: "caller", as: String.self) }
      }
      XCTAssertEqual(kept.count, 2, "\(kept)")
      XCTAssertTrue(kept.allSatisfy { $0.hasPrefix("key:") && !$0.contains(keyA) && !$0.contains(keyB) }, "\(kept)")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// `/openapi.json` offers the header exactly where the gateway honours it.
  func testTheDocumentOffersTheHeaderWhereItApplies() throws {
    let data = try OpenAPIDocument.build(routes: try RouteTable(), descriptorSet: MethodCatalogue.descriptorSet)
    let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let paths = try XCTUnwrap(document["paths"] as? [String: [String: Any]])
    func takesKey(_ path: String, _ verb: String) throws -> Bool {
      let operation = try XCTUnwrap(paths[path]?[verb] as? [String: Any], "\(verb) \(path)")
      let parameters = operation["parameters"] as? [[String: Any]] ?? []
      return parameters.contains { $0["$ref"] as? String == "#/components/parameters/Idempotency-Key" }
    }
    XCTAssertTrue(try takesKey("/api/v1/quizzes", "post"))
    XCTAssertFalse(try takesKey("/api/v1/quizzes", "get"))
    XCTAssertFalse(try takesKey("/api/v1/auth/login", "post"))
    XCTAssertFalse(try takesKey("/api/v1/auth/register", "post"))
    XCTAssertFalse(try takesKey("/api/v1/me/api-keys", "post"))
    let parameters = (document["components"] as? [String: Any])?["parameters"] as? [String: Any]
    XCTAssertNotNil(parameters?["Idempotency-Key"])
  }

  /// The gateway's database: `<data-dir>/gateway.sqlite`, or PostgreSQL from the environment.
  func testTheGatewayDatabaseFollowsDataDirAndDatabaseURL() throws {
    let targets = ["auth-target": "127.0.0.1:1", "quiz-target": "127.0.0.1:1", "scoring-target": "127.0.0.1:1"]
    let local = try GatewaySettings(layers: ConfigLayers(environment: [:], flags: targets.merging(["data-dir": "/tmp/qw-gw"]) { $1 }))
    XCTAssertEqual(local.databaseLocation, .sqlite(path: "/tmp/qw-gw/gateway.sqlite"))
    let shared = try GatewaySettings(
      layers: ConfigLayers(environment: ["QUIZWIRE_DATABASE_URL": "postgres://gw@db.internal/quizwire"], flags: targets))
    XCTAssertEqual(shared.databaseLocation, .postgres(url: "postgres://gw@db.internal/quizwire", poolSize: 10))
    XCTAssertThrowsError(try GatewaySettings(layers: ConfigLayers(environment: [:], flags: targets.merging(["database-url": "x"]) { $1 })))
  }

  /// Everything the issue asks of the header, against replicas whose database is `storage`.
  private func exercise(_ suite: GatewayHarness, storage: StorageOptions) async throws {
    let author = try await suite.signIn("idem-author@example.com", name: "Author")
    let other = try await suite.signIn("idem-other@example.com", name: "Other")
    try await Self.withReplicas(suite, storage: storage) { one, two in
      let body = #"{"title":"Once only","description":"Created with a key."}"#

      // First request on replica one: created, nothing replayed.
      let first = try await one.send("POST", "/api/v1/quizzes", json: body, bearer: author, headers: ["Idempotency-Key": "create-1"])
      XCTAssertEqual(first.status, 201, String(decoding: first.body, as: UTF8.self))
      XCTAssertNil(first.header("Idempotent-Replayed"))
      let id = try XCTUnwrap(first.data?["id"] as? String)
      XCTAssertEqual(first.header("Location"), "/api/v1/quizzes/\(id)")

      // The retry lands on replica two: the same status, headers and body, marked as a replay,
      // with this request's own X-Request-Id (the body keeps the first one's meta).
      let retry = try await two.send(
        "POST", "/api/v1/quizzes", json: body, bearer: author, headers: ["Idempotency-Key": #""create-1""#, "X-Request-Id": "retry-req-1"])
      XCTAssertEqual(retry.status, 201)
      XCTAssertEqual(retry.header("Idempotent-Replayed"), "true")
      XCTAssertEqual(retry.body, first.body, "the stored body byte for byte")
      XCTAssertEqual(retry.header("Location"), first.header("Location"))
      XCTAssertEqual(retry.header("Content-Type"), "application/json")
      XCTAssertEqual(retry.header("X-Request-Id"), "retry-req-1")
      XCTAssertEqual(retry.meta?["request_id"] as? String, first.header("X-Request-Id"))

      // Only one quiz exists.
      let list = try await two.send("GET", "/api/v1/quizzes", bearer: author)
      XCTAssertEqual(list.status, 200)
      XCTAssertEqual(list.list?.filter { $0["title"] as? String == "Once only" }.count, 1, String(decoding: list.body, as: UTF8.self))

      // The same key with another body: 422, nothing created.
      let changed = try await two.send(
        "POST", "/api/v1/quizzes", json: #"{"title":"Something else"}"#, bearer: author, headers: ["Idempotency-Key": "create-1"])
      XCTAssertEqual(changed.status, 422)
      XCTAssertEqual(changed.error?["reason"] as? String, "IDEMPOTENCY_KEY_MISMATCH")
      XCTAssertNil(changed.header("Idempotent-Replayed"))

      // Another caller's same key is another record: its own quiz, not a replay of the author's.
      let theirs = try await two.send("POST", "/api/v1/quizzes", json: body, bearer: other, headers: ["Idempotency-Key": "create-1"])
      XCTAssertEqual(theirs.status, 201)
      XCTAssertNil(theirs.header("Idempotent-Replayed"))
      XCTAssertNotEqual(theirs.data?["id"] as? String, id)

      // A burst of one create with one key on both replicas at once: exactly one runs; every
      // other request gets 409 (still running) or the kept answer.
      let burstBody = #"{"title":"Burst"}"#
      let burst = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
        for index in 0..<8 {
          let replica = index % 2 == 0 ? one : two
          group.addTask {
            try await replica.send("POST", "/api/v1/quizzes", json: burstBody, bearer: author, headers: ["Idempotency-Key": "burst-1"])
          }
        }
        var results: [HTTPResult] = []
        for try await result in group { results.append(result) }
        return results
      }
      let ran = burst.filter { $0.status == 201 && $0.header("Idempotent-Replayed") == nil }
      XCTAssertEqual(ran.count, 1, "\(burst.map { ($0.status, $0.header("Idempotent-Replayed") ?? "-") })")
      for result in burst where result.status != 201 {
        XCTAssertEqual(result.status, 409, String(decoding: result.body, as: UTF8.self))
        XCTAssertEqual(result.error?["reason"] as? String, "IDEMPOTENCY_KEY_IN_FLIGHT")
      }
      for result in burst where result.header("Idempotent-Replayed") != nil { XCTAssertEqual(result.body, ran.first?.body) }
      let burstList = try await one.send("GET", "/api/v1/quizzes", bearer: author)
      XCTAssertEqual(burstList.list?.filter { $0["title"] as? String == "Burst" }.count, 1)

      // While a request with the key is in flight (claimed on the shared database, as a replica
      // mid-call leaves it): 409 with Retry-After on the other replica.
      let me = try await one.send("GET", "/api/v1/me", bearer: author)
      let userID = try XCTUnwrap(me.data?["id"] as? String)
      let record = IdempotencyRecordID(caller: "user:\(userID)", method: "POST", path: "/api/v1/quizzes", key: "create-2")
      let fingerprint = IdempotencyPolicy.fingerprint(body: Data(body.utf8), query: "")
      guard case .claimed = try await one.host.store.claim(record, fingerprint: fingerprint) else { return XCTFail("claim") }
      let running = try await two.send("POST", "/api/v1/quizzes", json: body, bearer: author, headers: ["Idempotency-Key": "create-2"])
      XCTAssertEqual(running.status, 409, String(decoding: running.body, as: UTF8.self))
      XCTAssertEqual(running.error?["reason"] as? String, "IDEMPOTENCY_KEY_IN_FLIGHT")
      XCTAssertEqual(running.header("Retry-After"), "1")
      // A claim whose replica died is not stuck: past its lease the key runs again.
      let deadRecord = IdempotencyRecordID(caller: "user:\(userID)", method: "POST", path: "/api/v1/quizzes", key: "create-3")
      let longAgo = Date().addingTimeInterval(-61)
      guard case .claimed = try await one.host.store.claim(deadRecord, fingerprint: fingerprint, now: longAgo) else { return XCTFail("claim") }
      let takenOver = try await two.send("POST", "/api/v1/quizzes", json: body, bearer: author, headers: ["Idempotency-Key": "create-3"])
      XCTAssertEqual(takenOver.status, 201, String(decoding: takenOver.body, as: UTF8.self))

      // A final client error is kept too: the same 404 again, replayed.
      let missing = try await one.send(
        "POST", "/api/v1/quizzes/no-such-quiz/attempts", json: "{}", bearer: author, headers: ["Idempotency-Key": "attempt-1"])
      XCTAssertEqual(missing.status, 404, String(decoding: missing.body, as: UTF8.self))
      let missingAgain = try await two.send(
        "POST", "/api/v1/quizzes/no-such-quiz/attempts", json: "{}", bearer: author, headers: ["Idempotency-Key": "attempt-1"])
      XCTAssertEqual(missingAgain.status, 404)
      XCTAssertEqual(missingAgain.header("Idempotent-Replayed"), "true")
      XCTAssertEqual(missingAgain.body, missing.body)

      // Credential routes ignore the header: two logins with one key are two fresh sessions,
      // and nothing is written to the gateway's database for them.
      let login = #"{"email":"idem-author@example.com","password":"\#(GatewayHarness.password)"}"#
      let login1 = try await one.send("POST", "/api/v1/auth/login", json: login, bearer: author, headers: ["Idempotency-Key": "login-1"])
      let login2 = try await two.send("POST", "/api/v1/auth/login", json: login, bearer: author, headers: ["Idempotency-Key": "login-1"])
      XCTAssertEqual(login1.status, 200)
      XCTAssertEqual(login2.status, 200)
      XCTAssertNil(login2.header("Idempotent-Replayed"))
      XCTAssertNotEqual(login1.data?["refreshToken"] as? String, login2.data?["refreshToken"] as? String)
      let kept = try await one.host.store.database.read { uow in
        try await uow.sql.raw("SELECT path FROM gateway_idempotency").all().map { try $0.decode(column: "path", as: String.self) }
      }
      XCTAssertFalse(kept.contains("/api/v1/auth/login"), "\(kept)")
      XCTAssertTrue(kept.contains("/api/v1/quizzes"), "\(kept)")

      // Malformed keys: 400 in the envelope, before any call.
      // (Empty and non-ASCII values, which URLSession may not send as given, are unit-tested.)
      for bad in [#""""#, String(repeating: "k", count: 256), "two words", #""unterminated"#, #""a";p=1"#] {
        let refused = try await one.send("POST", "/api/v1/quizzes", json: body, bearer: author, headers: ["Idempotency-Key": bad])
        XCTAssertEqual(refused.status, 400, "\(bad.debugDescription): \(String(decoding: refused.body, as: UTF8.self))")
        XCTAssertEqual(refused.error?["reason"] as? String, "INVALID_IDEMPOTENCY_KEY", bad.debugDescription)
        XCTAssertNotNil(refused.header("X-Request-Id"))
      }
      // A key with nobody to own it: 401.
      let anonymous = try await one.send("POST", "/api/v1/quizzes", json: body, headers: ["Idempotency-Key": "anon-1"])
      XCTAssertEqual(anonymous.status, 401)
      XCTAssertEqual(anonymous.error?["reason"] as? String, "IDEMPOTENCY_KEY_NEEDS_CALLER")
      XCTAssertNotNil(anonymous.header("WWW-Authenticate"))

      // Replica two's /metrics counted what its requests met.
      let admin = try await two.host.addresses().admin
      let (scrape, _) = try await URLSession.shared.data(from: URL(string: "http://\(admin)/metrics")!)
      let metrics = String(decoding: scrape, as: UTF8.self)
      for outcome in ["kept", "replayed", "mismatch", "in_flight"] {
        let line = metrics.split(separator: "\n").first { $0.hasPrefix(#"gateway_idempotency_requests_total{outcome="\#(outcome)"}"#) }
        let value = line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } ?? 0
        XCTAssertGreaterThanOrEqual(value, 1, "\(outcome): \(line ?? "missing")")
      }

      let after = try await two.send("GET", "/api/v1/quizzes", bearer: author)
      XCTAssertEqual(
        after.list?.filter { $0["title"] as? String == "Once only" }.count, 2, "create-1 once and create-3 once; nothing else ran")
    }
  }

  /// One gateway replica, reached over HTTP.
  struct Replica {
    let host: GatewayHost
    let baseURL: String

    func send(_ method: String, _ path: String, json: String? = nil, bearer: String? = nil, headers: [String: String] = [:]) async throws
      -> HTTPResult
    {
      try await HTTPResult.send(method, self.baseURL + path, json: json, bearer: bearer, headers: headers)
    }
  }

  /// Two gateways on the suite's services with the gateway database `storage`, each under a
  /// ServiceGroup (as `quizwire serve gateway` runs it), drained after `body`.
  static func withReplicas(_ suite: GatewayHarness, storage: StorageOptions, _ body: (Replica, Replica) async throws -> Void) async throws {
    var settings = suite.gateway.settings
    (settings.httpPort, settings.adminPort) = (0, 0)
    settings.storage = storage
    var replicas: [Replica] = []
    var groups: [(ServiceGroup, Task<Void, any Error>)] = []
    var failure: (any Error)?
    do {
      for _ in 0..<2 {
        let host = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
        let group = ServiceGroup(services: [host], logger: Logger(label: "idempotency-test"))
        groups.append((group, Task { try await group.run() }))
        replicas.append(Replica(host: host, baseURL: "http://\(try await host.addresses().http)"))
      }
      try await body(replicas[0], replicas[1])
    } catch {
      failure = error
    }
    for (group, task) in groups {
      await group.triggerGracefulShutdown()
      _ = await task.result
    }
    if let failure { throw failure }
  }

  /// The URL of a PostgreSQL database made for this test, dropped after `body`.
  static func withFreshPostgresURL(_ url: String, _ body: (String) async throws -> Void) async throws {
    let name = "qw_gw_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    let admin = try Database(.postgres(url: url, poolSize: 1), logger: TestDatabases.logger)
    try await admin.read { uow in try await uow.sql.raw("CREATE DATABASE \(ident: String(name))").run() }
    var parts = try XCTUnwrap(URLComponents(string: url))
    parts.path = "/" + name
    var failure: (any Error)?
    do { try await body(try XCTUnwrap(parts.string)) } catch { failure = error }
    try? await admin.read { uow in try await uow.sql.raw("DROP DATABASE IF EXISTS \(ident: String(name)) WITH (FORCE)").run() }
    try? await admin.shutdown()
    if let failure { throw failure }
  }
}
