import Foundation
import FramedTransport
import GRPCCore
import GRPCProtobuf
import Gateway
import QuizwireProtos
import ServiceKit
import Synchronization
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The gateway retries reads, and only reads: a GET that a replica answers UNAVAILABLE is
/// tried again on another one (the browser never sees the failure); a PATCH is not, since a
/// retried write could apply twice.
final class GatewayRetryTests: XCTestCase {
  func testAReadIsRetriedOnAnotherReplicaAndAWriteIsNot() async throws {
    let failing = CountingQuizService(answer: .unavailable)
    let healthy = CountingQuizService(answer: nil)
    var servers: [Task<Void, any Error>] = []
    var targets: [String] = []
    for service in [failing, healthy] {
      let transport = try FramedServerTransport(config: .init(host: "127.0.0.1", port: 0))
      let server = GRPCServer(transport: transport, services: [service])
      servers.append(Task { try await server.serve() })
      targets.append("127.0.0.1:\(try await transport.listeningAddress.port!)")
    }
    defer { for s in servers { s.cancel() } }

    // A fresh gateway per phase, so one phase's failures (the failing replica's breaker) can't
    // steer the other's calls.
    do {
      let (_, addresses, running) = try await startLoneGateway(targets: ["quiz": targets.joined(separator: ",")])
      defer { running.cancel() }
      for i in 0..<8 {
        let answer = try await HTTPResult.send("GET", "http://\(addresses.http)/api/v1/quizzes/q1")
        XCTAssertEqual(answer.status, 200, "GET \(i): \(String(decoding: answer.body, as: UTF8.self))")
      }
    }
    XCTAssertGreaterThanOrEqual(failing.counts.reads, 1, "round robin sent a read to the failing replica")
    XCTAssertEqual(healthy.counts.reads, 8, "every read ended, once, at the healthy replica")

    do {
      let (_, addresses, running) = try await startLoneGateway(targets: ["quiz": targets.joined(separator: ",")])
      defer { running.cancel() }
      var statuses: [Int] = []
      for _ in 0..<4 {
        statuses.append(try await HTTPResult.send("PATCH", "http://\(addresses.http)/api/v1/quizzes/q1", json: #"{"title":"t"}"#).status)
      }
      XCTAssertEqual(statuses.filter { $0 == 503 }.count, failing.counts.writes, "every write the failing replica got came back as 503: \(statuses)")
      XCTAssertGreaterThanOrEqual(failing.counts.writes, 1, "\(statuses)")
      XCTAssertEqual(statuses.filter { $0 == 200 }.count, healthy.counts.writes, "\(statuses)")
      XCTAssertEqual(statuses.count, failing.counts.writes + healthy.counts.writes, "no write was sent twice")
    }
  }
}

/// A quiz service answering GetQuiz and UpdateQuiz with `answer` (or a quiz when nil),
/// counting the calls.
final class CountingQuizService: RegistrableRPCService {
  struct Counts { var reads = 0, writes = 0 }
  private let state = Mutex(Counts())
  let answer: RPCError.Code?
  var counts: Counts { self.state.withLock { $0 } }

  init(answer: RPCError.Code?) { self.answer = answer }

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Quiz_V1_QuizService.Method.GetQuiz.descriptor, deserializer: ProtobufDeserializer<Quiz_V1_GetQuizRequest>(),
      serializer: ProtobufSerializer<Quiz_V1_Quiz>()
    ) { _, _ in
      self.state.withLock { $0.reads += 1 }
      return self.reply()
    }
    router.registerHandler(
      forMethod: Quiz_V1_QuizService.Method.UpdateQuiz.descriptor, deserializer: ProtobufDeserializer<Quiz_V1_UpdateQuizRequest>(),
      serializer: ProtobufSerializer<Quiz_V1_Quiz>()
    ) { _, _ in
      self.state.withLock { $0.writes += 1 }
      return self.reply()
    }
  }

  private func reply() -> StreamingServerResponse<Quiz_V1_Quiz> {
    if let answer { return StreamingServerResponse(error: RPCError(code: answer, message: "this replica is failing")) }
    return StreamingServerResponse(
      single: ServerResponse(
        message: .with {
          $0.id = "q1"; $0.title = "t"
        }))
  }
}
