import Foundation
import FramedTransport
import GRPCCore
import GRPCProtobuf
import Gateway
import QuizwireProtos
import ServiceKit
import Synchronization
import TestSupport
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// Each route's call carries its own deadline: a read gives up at `read-deadline-ms`, a write
/// at `write-deadline-ms`, register and login at `password-deadline-ms`; the browser gets 504
/// DEADLINE_EXCEEDED then, and the service sees its handler cancelled, instead of both waiting
/// the client's general 10 s.
final class GatewayDeadlineTests: XCTestCase {
  func testEachRouteGetsItsBudgetFromOneRule() throws {
    let table = try RouteTable()
    let deadlines = RouteDeadlines(read: .milliseconds(100), write: .milliseconds(200), passwordHashing: .milliseconds(300))
    func budget(_ verb: String, _ path: String) throws -> Duration {
      guard case .route(let route, _) = table.match(verb: verb, path: path) else { throw XCTSkip("no route \(verb) \(path)") }
      return deadlines.budget(for: route)
    }
    XCTAssertEqual(try budget("GET", "/api/v1/quizzes/q1"), .milliseconds(100))
    XCTAssertEqual(try budget("GET", "/api/v1/me"), .milliseconds(100))
    XCTAssertEqual(try budget("PATCH", "/api/v1/quizzes/q1"), .milliseconds(200))
    XCTAssertEqual(try budget("POST", "/api/v1/quizzes/q1/attempts"), .milliseconds(200))
    XCTAssertEqual(try budget("DELETE", "/api/v1/quizzes/q1"), .milliseconds(200))
    XCTAssertEqual(try budget("POST", "/api/v1/auth/register"), .milliseconds(300))
    XCTAssertEqual(try budget("POST", "/api/v1/auth/login"), .milliseconds(300))
    // Every password-hashing method has a route, so the rule can't silently name a stale one.
    for method in RouteDeadlines.passwordHashingMethods {
      XCTAssertTrue(table.routes.contains { $0.method.fullName == method }, method)
    }

    // The defaults, and the settings that change them.
    let defaults = RouteDeadlines()
    XCTAssertEqual([defaults.read, defaults.write, defaults.passwordHashing], [.seconds(3), .seconds(5), .seconds(10)])
    let flags = ["auth-target": "a:1", "quiz-target": "q:1", "scoring-target": "s:1"]
    let chosen = ["read-deadline-ms": "250", "write-deadline-ms": "900", "password-deadline-ms": "4000"]
    let set = try GatewaySettings(layers: ConfigLayers(environment: [:], flags: flags.merging(chosen) { $1 }))
    XCTAssertEqual(set.deadlines, RouteDeadlines(read: .milliseconds(250), write: .milliseconds(900), passwordHashing: .seconds(4)))
    XCTAssertThrowsError(try GatewaySettings(layers: ConfigLayers(environment: [:], flags: flags.merging(["read-deadline-ms": "0"]) { $1 }))) {
      XCTAssertTrue("\($0)".contains("read-deadline-ms"), "\($0)")
    }
  }

  func testASlowServiceIs504AtTheRoutesDeadlineAndItsHandlerIsCancelled() async throws {
    let stalled = StalledQuizService()
    let transport = try FramedServerTransport(config: .init(host: "127.0.0.1", port: 0))
    let server = GRPCServer(transport: transport, services: [stalled])
    let serving = Task { try await server.serve() }
    defer { serving.cancel() }
    let quiz = "127.0.0.1:\(try await transport.listeningAddress.port!)"
    let (_, addresses, running) = try await startLoneGateway(
      targets: ["quiz": quiz], flags: ["read-deadline-ms": "300", "write-deadline-ms": "900"])
    defer { running.cancel() }
    let base = "http://\(addresses.http)"

    for (method, json, budget) in [("GET", nil, 0.3), ("PATCH", #"{"title":"late"}"#, 0.9)] {
      let start = ContinuousClock.now
      let answer = try await HTTPResult.send(method, base + "/api/v1/quizzes/q1", json: json)
      let took = (ContinuousClock.now - start) / .seconds(1)
      XCTAssertEqual(answer.status, 504, "\(method): \(String(decoding: answer.body, as: UTF8.self))")
      XCTAssertEqual(answer.error?["status"] as? String, "DEADLINE_EXCEEDED", method)
      XCTAssertGreaterThanOrEqual(took, budget * 0.9, "\(method) gave up before its budget")
      XCTAssertLessThan(took, budget + 1.5, "\(method) waited far past its budget (the client's 10 s default?)")
    }
    // The deadline reached the service: both handlers were cancelled, none still runs.
    let deadline = ContinuousClock.now + .seconds(2)
    while stalled.counts.running > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    XCTAssertEqual(stalled.counts.started, 2)
    XCTAssertEqual(stalled.counts.running, 0)
  }
}

/// A quiz service whose GetQuiz and UpdateQuiz never answer: they wait until the call is
/// cancelled (its deadline), counting what started and what is still running.
final class StalledQuizService: RegistrableRPCService {
  struct Counts { var started = 0, running = 0 }
  private let state = Mutex(Counts())
  var counts: Counts { self.state.withLock { $0 } }

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Quiz_V1_QuizService.Method.GetQuiz.descriptor, deserializer: ProtobufDeserializer<Quiz_V1_GetQuizRequest>(),
      serializer: ProtobufSerializer<Quiz_V1_Quiz>()
    ) { _, _ in try await self.stall() }
    router.registerHandler(
      forMethod: Quiz_V1_QuizService.Method.UpdateQuiz.descriptor, deserializer: ProtobufDeserializer<Quiz_V1_UpdateQuizRequest>(),
      serializer: ProtobufSerializer<Quiz_V1_Quiz>()
    ) { _, _ in try await self.stall() }
  }

  private func stall() async throws -> StreamingServerResponse<Quiz_V1_Quiz> {
    self.state.withLock {
      $0.started += 1
      $0.running += 1
    }
    defer { self.state.withLock { $0.running -= 1 } }
    try await Task.sleep(for: .seconds(60))
    return StreamingServerResponse(error: RPCError(code: .internalError, message: "not cancelled within 60 s"))
  }
}
