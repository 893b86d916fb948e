import Foundation
import NIOCore
import HTTPTypes
import Hummingbird
import GRPCCore
import Logging
import QuizwireProtos
import ServiceKit
import ServiceLifecycle
import TestSupport
import XCTest

@testable import Gateway

/// `GET /api/v1/quizzes/{id}/leaderboard/stream` end to end over real HTTP: SSE events per
/// leaderboard version, `Last-Event-ID` resume, heartbeats, NDJSON, errors before the first
/// event as JSON, and a client going away ending the RPC on scoring.
final class LeaderboardSSETests: XCTestCase {
  /// A published one-question quiz; returns its id and the question's id.
  private func publishedQuiz(_ suite: GatewayHarness, token: String) async throws -> (id: String, questionID: String) {
    let created = try await suite.request("POST", "/api/v1/quizzes", json: GatewayEndToEndTests.quizBody, bearer: token)
    XCTAssertEqual(created.status, 201, String(decoding: created.body, as: UTF8.self))
    let id = try XCTUnwrap(created.data?["id"] as? String)
    let questions = try XCTUnwrap(created.data?["questions"] as? [[String: Any]])
    let questionID = try XCTUnwrap(questions.first?["id"] as? String)
    let published = try await suite.request("POST", "/api/v1/quizzes/\(id)/publish", bearer: token)
    XCTAssertEqual(published.status, 200, String(decoding: published.body, as: UTF8.self))
    return (id, questionID)
  }

  /// Starts an attempt through the gateway and finishes it with the right answer over
  /// SubmitAnswers (no HTTP route plays yet), on the gateway's own scoring client.
  private func play(_ suite: GatewayHarness, quiz: (id: String, questionID: String), token: String) async throws {
    let attempt = try await suite.request("POST", "/api/v1/quizzes/\(quiz.id)/attempts", bearer: token)
    XCTAssertEqual(attempt.status, 201, String(decoding: attempt.body, as: UTF8.self))
    let attemptID = try XCTUnwrap(attempt.data?["id"] as? String)
    let scoring = Scoring_V1_ScoringService.Client(wrapping: try XCTUnwrap(suite.gateway.upstreams.clients["scoring"]).client)
    let finished = try await scoring.submitAnswers(metadata: ["authorization": "Bearer \(token)"]) { writer in
      try await writer.write(
        .with {
          $0.attemptID = attemptID
          $0.questionID = quiz.questionID
          $0.choiceIds = ["a"]
        })
    }
    XCTAssertEqual(finished.state, .finished)
  }

  /// The next `event: snapshot` block's id and decoded data (heartbeats skipped).
  private func nextSnapshot(_ stream: RawHTTPStream, within limit: Duration) async throws -> (id: Int64, data: [String: Any]) {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
      guard let block = await stream.next(until: "\n\n", within: deadline - ContinuousClock.now) else { break }
      if block == ": ping" { continue }
      let lines = block.split(separator: "\n").map(String.init)
      XCTAssertEqual(lines.count, 3, block)
      XCTAssertEqual(lines[1], "event: snapshot", block)
      let id = try XCTUnwrap(Int64(lines[0].replacingOccurrences(of: "id: ", with: "")), block)
      let data = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(lines[2].replacingOccurrences(of: "data: ", with: "").utf8)) as? [String: Any], block)
      return (id, data)
    }
    throw RawHTTPError.io("no snapshot within \(limit)")
  }

  /// Open WatchLeaderboard calls on scoring (its server RPC metrics).
  private func watchers(_ suite: GatewayHarness) -> Double {
    let line = suite.hosts[1].metrics.exposition().split(separator: "\n").first {
      $0.hasPrefix("rpc_server_in_flight{") && $0.contains("WatchLeaderboard")
    }
    return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
  }

  func testSnapshotsResumeHeartbeatsAndDisconnect() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: ["sse-heartbeat-ms": "200"])
    do {
      let author = try await suite.signIn("author@example.com", name: "Author")
      let quiz = try await self.publishedQuiz(suite, token: author)

      let stream = try RawHTTPStream(suite.baseURL, "/api/v1/quizzes/\(quiz.id)/leaderboard/stream?top=5", headers: ["X-Request-Id": "sse-1"])
      XCTAssertEqual(stream.status, 200)
      XCTAssertEqual(stream.header("Content-Type"), "text/event-stream")
      XCTAssertEqual(stream.header("Cache-Control"), "no-store")
      XCTAssertEqual(stream.header("X-Request-Id"), "sse-1")
      XCTAssertEqual(stream.header("X-Content-Type-Options"), "nosniff", "the responder's policy headers")
      let first = try await self.nextSnapshot(stream, within: .seconds(10))
      XCTAssertEqual(first.id, 0)
      XCTAssertEqual(first.data["quizId"] as? String, quiz.id)
      XCTAssertNil(first.data["entries"], "no one has finished yet")

      let player = try await suite.signIn("player@example.com", name: "Player One")
      try await self.play(suite, quiz: quiz, token: player)
      let second = try await self.nextSnapshot(stream, within: .seconds(10))
      XCTAssertEqual(second.id, 1)
      XCTAssertEqual(second.data["version"] as? String, "1", "int64 as a string")
      let entries = try XCTUnwrap(second.data["entries"] as? [[String: Any]])
      XCTAssertEqual(entries.count, 1)
      XCTAssertTrue(String(describing: entries[0]).contains("Player One"), "\(entries[0])")

      // A reconnect that has seen version 1 gets heartbeats but no event until version 2.
      let resumed = try RawHTTPStream(suite.baseURL, "/api/v1/quizzes/\(quiz.id)/leaderboard/stream", headers: ["Last-Event-ID": "1"])
      XCTAssertEqual(resumed.status, 200)
      var pings = 0
      let quiet = ContinuousClock.now + .milliseconds(900)
      while ContinuousClock.now < quiet, let block = await resumed.next(until: "\n\n", within: quiet - ContinuousClock.now) {
        XCTAssertEqual(block, ": ping", "nothing but heartbeats before the next change")
        pings += 1
      }
      XCTAssertGreaterThanOrEqual(pings, 2, "a heartbeat every 200 ms")
      try await self.play(suite, quiz: quiz, token: try await suite.signIn("second@example.com", name: "Second"))
      let third = try await self.nextSnapshot(resumed, within: .seconds(10))
      XCTAssertEqual(third.id, 2)
      XCTAssertEqual((third.data["entries"] as? [[String: Any]])?.count, 2)

      // Longer than the clients' default deadline for a call (10 s): still only heartbeats.
      let long = ContinuousClock.now + .seconds(11)
      while ContinuousClock.now < long, let block = await resumed.next(until: "\n\n", within: long - ContinuousClock.now) {
        XCTAssertEqual(block, ": ping", "a watch outlives the default call deadline")
      }
      XCTAssertFalse(resumed.eof)

      // Browsers going away end both RPCs on scoring (the next heartbeat write fails).
      XCTAssertEqual(self.watchers(suite), 2)
      stream.close()
      resumed.close()
      let deadline = ContinuousClock.now + .seconds(10)
      while self.watchers(suite) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
      XCTAssertEqual(self.watchers(suite), 0, "the disconnected streams' RPCs were cancelled")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// A client that goes away before the response head is written: Hummingbird drops the
  /// response without running its body, and the watch on scoring still ends.
  func testAStreamWhoseBodyNeverRunsEndsItsWatch() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let author = try await suite.signIn("author@example.com", name: "Author")
      let quiz = try await self.publishedQuiz(suite, token: author)
      let streams = StreamResponder(upstreams: suite.gateway.upstreams, heartbeat: .seconds(15))
      let head = HTTPRequest(method: .get, scheme: "http", authority: "gateway", path: "/api/v1/quizzes/\(quiz.id)/leaderboard/stream")
      do {
        let response = try await streams.response(to: Request(head: head, body: .init(buffer: ByteBuffer())), requestID: "r1", forwardedFor: nil)
        XCTAssertEqual(response?.status, .ok)
        XCTAssertEqual(self.watchers(suite), 1, "the watch is open once the first snapshot came")
      }  // dropped here, its body never run
      let deadline = ContinuousClock.now + .seconds(5)
      while self.watchers(suite) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
      XCTAssertEqual(self.watchers(suite), 0, "the dropped response's watch was cancelled")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testADrainingGatewayEndsItsStreams() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let author = try await suite.signIn("drain@example.com", name: "Author")
      let quiz = try await self.publishedQuiz(suite, token: author)
      // A second gateway on the same services, under a ServiceGroup as `quizwire up` runs it,
      // so it can be drained (the harness's gateway is only ever cancelled).
      var settings = suite.gateway.settings
      (settings.httpPort, settings.adminPort) = (0, 0)
      let gateway = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
      let group = ServiceGroup(services: [gateway], logger: Logger(label: "drain-test"))
      let running = Task { try await group.run() }
      let address = try await gateway.addresses().http

      let stream = try RawHTTPStream("http://\(address)", "/api/v1/quizzes/\(quiz.id)/leaderboard/stream")
      XCTAssertEqual(stream.status, 200)
      let first = try await self.nextSnapshot(stream, within: .seconds(10))
      XCTAssertEqual(first.id, 0)
      await group.triggerGracefulShutdown()
      let last = await stream.next(until: "\n\n", within: .seconds(10))
      XCTAssertTrue(last?.hasPrefix("event: error\ndata: ") == true, last ?? "nothing")
      XCTAssertTrue(last?.contains(#""status":"UNAVAILABLE""#) == true, last ?? "nothing")
      let stopped = await endsByItself(running)
      XCTAssertTrue(stopped, "the gateway stopped by itself, not held up by the stream")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testNDJSONAndErrorsBeforeTheFirstEvent() async throws {
    let suite = try await GatewayHarness.start()
    do {
      let author = try await suite.signIn("nd@example.com", name: "Author")
      let quiz = try await self.publishedQuiz(suite, token: author)

      let ndjson = try RawHTTPStream(suite.baseURL, "/api/v1/quizzes/\(quiz.id)/leaderboard/stream", headers: ["Accept": "application/x-ndjson"])
      XCTAssertEqual(ndjson.status, 200)
      XCTAssertEqual(ndjson.header("Content-Type"), "application/x-ndjson")
      let received = await ndjson.next(until: "\n", within: .seconds(10))
      let line = try XCTUnwrap(received)
      let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
      XCTAssertEqual(object["quizId"] as? String, quiz.id)
      XCTAssertEqual(object["version"] as? String ?? "0", "0")
      ndjson.close()

      let unknown = try await suite.request("GET", "/api/v1/quizzes/no-such-quiz/leaderboard/stream")
      XCTAssertEqual(unknown.status, 404, String(decoding: unknown.body, as: UTF8.self))
      XCTAssertEqual(unknown.header("Content-Type"), "application/json")
      XCTAssertEqual(unknown.error?["status"] as? String, "NOT_FOUND")
      XCTAssertEqual(unknown.meta?["request_id"] as? String, unknown.header("X-Request-Id"))

      let tooMany = try await suite.request("GET", "/api/v1/quizzes/\(quiz.id)/leaderboard/stream?top=101")
      XCTAssertEqual(tooMany.status, 400)
      XCTAssertEqual(tooMany.violations["top"], "must be an integer from 1 to 100")

      let posted = try await suite.request("POST", "/api/v1/quizzes/\(quiz.id)/leaderboard/stream", json: "{}")
      XCTAssertEqual(posted.status, 405)
      XCTAssertEqual(posted.header("Allow"), "GET")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }
}

/// The last events, which the live service only sends when a watch ends: written from the
/// mailbox without sockets.
final class LeaderboardSSEEndTests: XCTestCase {
  private func written(_ mailbox: StreamMailbox, format: StreamResponder.Format, resumeAfter: Int64?) async throws -> String {
    var text = ""
    try await StreamResponder.pump(mailbox, format: format, resumeAfter: resumeAfter) { text += $0 }
    return text
  }

  func testTheRPCsEndIsTheLastEvent() async throws {
    let snapshot = Scoring_V1_LeaderboardSnapshot.with {
      $0.quizID = "q1"
      $0.version = 3
    }
    let failed = StreamMailbox()
    failed.post(snapshot, id: 3)
    failed.close(RPCError(code: .notFound, message: "quiz q1 not found"))
    let sse = try await self.written(failed, format: .eventStream, resumeAfter: 2)
    XCTAssertTrue(sse.hasPrefix("id: 3\nevent: snapshot\ndata: {\"version\":\"3\",\"quizId\":\"q1\"}\n\n"), sse)
    let error = try XCTUnwrap(sse.components(separatedBy: "event: error\ndata: ").last?.dropLast(2))
    let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(error.utf8)) as? [String: Any], sse)
    XCTAssertEqual(object["status"] as? String, "NOT_FOUND")
    XCTAssertEqual(object["code"] as? Int, 404)
    XCTAssertTrue(sse.hasSuffix("\n\n"))

    let resumed = StreamMailbox()
    resumed.post(snapshot, id: 3)
    resumed.close(nil)
    let end = try await self.written(resumed, format: .eventStream, resumeAfter: 3)
    XCTAssertEqual(end, "event: end\ndata: {}\n\n", "version 3 was seen already")

    let ndjson = StreamMailbox()
    ndjson.post(snapshot, id: 3)
    ndjson.close(RPCError(code: .unavailable, message: "scoring is down"))
    let lines = try await self.written(ndjson, format: .ndjson, resumeAfter: nil).split(separator: "\n")
    XCTAssertEqual(lines.count, 2)
    XCTAssertEqual(lines.first, #"{"version":"3","quizId":"q1"}"#)
    XCTAssertTrue(lines.last?.hasPrefix(#"{"error":{"#) == true, "\(lines)")
  }
}

/// Which requests set up their stream in a task of their own (`GatewayResponder.respond`).
final class StreamRouteMatchTests: XCTestCase {
  func testEveryStreamRouteIsRecognisedAndNothingElse() {
    for route in StreamRoute.all {
      let path = route.template.description.replacingOccurrences(of: "{quiz_id}", with: "q1")
      XCTAssertTrue(StreamRoute.isStream(path: path), path)
    }
    for path in ["/api/v1/quizzes/q1/leaderboard", "/api/v1/quizzes/q1", "/api/v1/stream", "/api/v1/quizzes/q1/questions/stream", "/"] {
      XCTAssertFalse(StreamRoute.isStream(path: path), path)
    }
  }
}
