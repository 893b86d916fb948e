import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import QuizService
import ServiceKit
import ServiceLifecycle
import Synchronization
import XCTest

@testable import Gateway

/// `GET /api/v1/attempts/play` as a WebSocket over real sockets, in front of the real suite:
/// the demo quiz played to its end with a bearer header and with a single-use ticket, the
/// refusals (1008), RPC errors as 4000 + code, bad frames, and backpressure from a client that
/// stops reading.
final class PlayWebSocketTests: XCTestCase {
  /// The WebSocket client sends `Origin: <scheme>://<host>` of the URL it opens, so the suite
  /// allows the harness's own origin, as a deployment allows the site that serves its pages.
  static let flags = ["cors-origins": "http://127.0.0.1"]
  static let logger = Logger(label: "play-test")

  /// The demo quiz's answers by question id (`QuizSeed`), as the JSON of a `PlayAnswer`'s fields.
  static let demoAnswers = [
    "qq_demo_1": #""choiceIds":["a"]"#, "qq_demo_2": #""choiceIds":["false"]"#, "qq_demo_3": #""choiceIds":["a","b","d"]"#,
    "qq_demo_4": #""text":"await""#, "qq_demo_5": #""choiceIds":["a"]"#,
  ]
  static let start = #"{"start":{"quizId":"\#(QuizSeed.demoQuizID)"}}"#

  /// What one socket saw: its text frames (parsed) and how it was closed.
  struct Session {
    var frames: [[String: Any]]
    var closeCode: Int?
    var reason: String?
  }

  /// Collects frames from the client's handler (a `@Sendable` closure).
  final class Frames: Sendable {
    private let texts = Mutex<[String]>([])
    func append(_ text: String) { self.texts.withLock { $0.append(text) } }
    var all: [[String: Any]] {
      self.texts.withLock { $0 }.map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? ["unparsed": $0] }
    }
  }

  /// Opens the socket at `path`, runs `body`, and returns what was received and the close.
  static func session(
    _ suite: GatewayHarness, _ path: String = PlayRoutes.socket, host: String = "127.0.0.1", headers: HTTPFields = [:],
    _ body: @escaping @Sendable (WebSocketInboundStream, WebSocketOutboundWriter, Frames) async throws -> Void
  ) async throws -> Session {
    let frames = Frames()
    let port = suite.baseURL.split(separator: ":").last!
    let close = try await WebSocketClient.connect(
      url: "http://\(host):\(port)\(path)", configuration: .init(maxFrameSize: 1 << 16, additionalHeaders: headers), logger: Self.logger
    ) { inbound, outbound, _ in
      // A refused socket is closed by the server at once: a write racing that close fails,
      // which is no failure of the test (the close code and the frames are what it checks).
      try? await body(inbound, outbound, frames)
    }
    return Session(frames: frames.all, closeCode: close.map { Int(UInt16(webSocketErrorCode: $0.closeCode)) }, reason: close?.reason)
  }

  /// Plays the demo quiz: start, then the right answer to each question shown, until the
  /// server closes.
  static func playDemo(_ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter, _ frames: Frames) async throws {
    try await outbound.write(.text(Self.start))
    try await Self.answerUntilClosed(inbound.messages(maxSize: 1 << 20).makeAsyncIterator(), outbound, frames)
  }

  /// Records every frame and answers every question it shows, until the close.
  static func answerUntilClosed(
    _ iterator: WebSocketInboundMessageStream.AsyncIterator, _ outbound: WebSocketOutboundWriter, _ frames: Frames
  ) async throws {
    var iterator = iterator
    while let message = try await iterator.next() {
      guard case .text(let text) = message else { continue }
      frames.append(text)
      let event = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
      if let shown = event?["question"] as? [String: Any], let question = shown["question"] as? [String: Any], let id = question["id"] as? String {
        try await outbound.write(.text(#"{"answer":{"questionId":"\#(id)",\#(Self.demoAnswers[id] ?? "")}}"#))
      }
    }
  }

  /// Open Play calls on scoring (its server RPC metrics).
  static func playCalls(_ suite: GatewayHarness) -> Double {
    let line = suite.hosts[1].metrics.exposition().split(separator: "\n").first {
      $0.hasPrefix("rpc_server_in_flight{") && $0.contains(#"method="Play""#)
    }
    return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
  }

  /// Play calls scoring has finished, whatever their status.
  static func finishedPlayCalls(_ suite: GatewayHarness) -> Double {
    suite.hosts[1].metrics.exposition().split(separator: "\n")
      .filter { $0.hasPrefix("rpc_server_requests_total{") && $0.contains(#"method="Play""#) }
      .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
  }

  /// The demo quiz finished with full marks: the last frame is `finished`, the close is 1000.
  func assertFinished(_ session: Session, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(session.closeCode, 1000, "\(session)", file: file, line: line)
    let last = session.frames.last?["finished"] as? [String: Any]
    let attempt = last?["attempt"] as? [String: Any]
    XCTAssertEqual(attempt?["state"] as? String, "ATTEMPT_STATE_FINISHED", "\(session.frames.last ?? [:])", file: file, line: line)
    XCTAssertEqual(attempt?["score"] as? Int, 5, "\(session.frames.last ?? [:])", file: file, line: line)
    XCTAssertEqual(session.frames.filter { $0["question"] != nil }.count, 5, file: file, line: line)
    XCTAssertEqual(session.frames.filter { $0["feedback"] != nil }.count, 5, file: file, line: line)
  }

  func ticket(_ suite: GatewayHarness, bearer: String, json: String? = nil) async throws -> String {
    let issued = try await suite.request("POST", PlayRoutes.ticket, json: json, bearer: bearer)
    XCTAssertEqual(issued.status, 201, String(decoding: issued.body, as: UTF8.self))
    let rfc3339 = ISO8601DateFormatter()
    rfc3339.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    let expiresAt = try XCTUnwrap((issued.data?["expires_at"] as? String).flatMap { rfc3339.date(from: $0) }, "\(issued.data ?? [:])")
    XCTAssertEqual(expiresAt.timeIntervalSinceNow, suite.gateway.settings.playTicketTTL / .seconds(1), accuracy: 5)
    return try XCTUnwrap(issued.data?["ticket"] as? String)
  }

  func testDemoQuizPlayedWithBearerAndWithSingleUseTicket() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags)
    do {
      let token = try await suite.signIn("player@example.com", name: "Player")
      let withBearer = try await Self.session(suite, headers: [.authorization: "Bearer \(token)"], Self.playDemo)
      self.assertFinished(withBearer)
      XCTAssertEqual(withBearer.reason, "finished")
      XCTAssertEqual(suite.gateway.playSockets.openSockets, 0)
      // 5 questions, 5 feedbacks and the result, on the admin port's /metrics.
      let (metrics, _) = try await URLSession.shared.data(from: URL(string: suite.adminURL + "/metrics")!)
      let lines = String(decoding: metrics, as: UTF8.self).split(separator: "\n")
      XCTAssertTrue(lines.contains("gateway_play_frames_sent_total 11"), lines.filter { $0.contains("gateway_play") }.joined(separator: "\n"))
      XCTAssertTrue(lines.contains("gateway_play_sockets_open 0.0") || lines.contains("gateway_play_sockets_open 0"))

      // A ticket (no body, and `{}`), redeemed by a socket with no Authorization header.
      let ticket = try await self.ticket(suite, bearer: token)
      let second = try await self.ticket(suite, bearer: token, json: "{}")
      XCTAssertNotEqual(ticket, second)
      let withTicket = try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(ticket)", Self.playDemo)
      self.assertFinished(withTicket)
      // Single use: the same ticket again is refused before any RPC.
      let reused = try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(ticket)", Self.playDemo)
      XCTAssertEqual(reused.closeCode, 1008, "\(reused)")
      XCTAssertTrue(reused.reason?.contains("already used") == true, "\(reused)")
      XCTAssertTrue(reused.frames.isEmpty, "\(reused.frames)")

      // Refusals, each 1008 with its reason.
      let forged = try await Self.session(suite, "\(PlayRoutes.socket)?ticket=pt1.AAAA\(second.suffix(8))", Self.playDemo)
      XCTAssertEqual(forged.closeCode, 1008)
      XCTAssertTrue(forged.reason?.contains("not valid") == true, "\(forged)")
      let anonymous = try await Self.session(suite, PlayRoutes.socket, Self.playDemo)
      XCTAssertEqual(anonymous.closeCode, 1008)
      XCTAssertTrue(anonymous.reason?.contains("sign in") == true, "\(anonymous)")
      let badToken = try await Self.session(suite, headers: [.authorization: "Bearer not.a.token"], Self.playDemo)
      XCTAssertEqual(badToken.closeCode, 1008)
      XCTAssertTrue(badToken.reason?.contains("bearer token is not valid") == true, "\(badToken)")
      // Origin "http://localhost" is not on the allow-list: refused even with a valid ticket,
      // which stays unspent.
      let foreign = try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(second)", host: "localhost", Self.playDemo)
      XCTAssertEqual(foreign.closeCode, 1008)
      XCTAssertTrue(foreign.reason?.contains("origin http://localhost") == true, "\(foreign)")
      self.assertFinished(try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(second)", Self.playDemo))

      // The Play paths over plain HTTP.
      let plain = try await suite.request("GET", PlayRoutes.socket, bearer: token)
      XCTAssertEqual(plain.status, 426)
      XCTAssertEqual(plain.header("Upgrade"), "websocket")
      XCTAssertNotNil(plain.error?["message"] as? String)
      let anonymousTicket = try await suite.request("POST", PlayRoutes.ticket)
      XCTAssertEqual(anonymousTicket.status, 401)
      XCTAssertEqual(anonymousTicket.error?["status"] as? String, "UNAUTHENTICATED")
      let extraField = try await suite.request("POST", PlayRoutes.ticket, json: #"{"quizId":"x"}"#, bearer: token)
      XCTAssertEqual(extraField.status, 400)
      XCTAssertEqual(extraField.violations["quizId"], "unknown field")
      let wrongVerb = try await suite.request("GET", PlayRoutes.ticket, bearer: token)
      XCTAssertEqual(wrongVerb.status, 405)
      XCTAssertEqual(wrongVerb.header("Allow"), "POST")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testRPCErrorsAndBadFramesCloseWithTheirCodes() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags)
    do {
      let token = try await suite.signIn("player@example.com", name: "Player")
      let auth: HTTPFields = [.authorization: "Bearer \(token)"]
      func send(_ text: String) -> @Sendable (WebSocketInboundStream, WebSocketOutboundWriter, Frames) async throws -> Void {
        { inbound, outbound, frames in
          try await outbound.write(.text(text))
          try await Self.answerUntilClosed(inbound.messages(maxSize: 1 << 20).makeAsyncIterator(), outbound, frames)
        }
      }
      // The service's errors: 4000 + the gRPC code, the status message as the reason.
      let unknownQuiz = try await Self.session(suite, headers: auth, send(#"{"start":{"quizId":"qz_nope"}}"#))
      XCTAssertEqual(unknownQuiz.closeCode, 4005, "\(unknownQuiz)")
      XCTAssertTrue(unknownQuiz.reason?.contains("qz_nope") == true, "\(unknownQuiz)")
      let answerFirst = try await Self.session(suite, headers: auth, send(#"{"answer":{"questionId":"qq_demo_1"}}"#))
      XCTAssertEqual(answerFirst.closeCode, 4003, "\(answerFirst)")
      XCTAssertEqual(answerFirst.reason, "the first message must be start or resume")
      let foreignAttempt = try await Self.session(suite, headers: auth, send(#"{"resume":{"attemptId":"at_not_mine"}}"#))
      XCTAssertEqual(foreignAttempt.closeCode, 4005, "\(foreignAttempt)")

      // Frames the gateway refuses itself, before they reach the service: 4003 for JSON that
      // is not a PlayRequest, 1003 for binary.
      let malformed = try await Self.session(suite, headers: auth, send("{start"))
      XCTAssertEqual(malformed.closeCode, 4003)
      XCTAssertEqual(malformed.reason, "invalid PlayRequest: malformed JSON")
      let unknownField = try await Self.session(suite, headers: auth, send(#"{"start":{"quizId":"q","level":3}}"#))
      XCTAssertEqual(unknownField.closeCode, 4003)
      XCTAssertTrue(unknownField.reason?.contains("start.level") == true, "\(unknownField)")
      let wrongType = try await Self.session(suite, headers: auth, send(#"{"answer":{"choiceIds":"a"}}"#))
      XCTAssertEqual(wrongType.closeCode, 4003)
      XCTAssertTrue(wrongType.reason?.contains("answer.choiceIds") == true, "\(wrongType)")
      // A bad frame mid-game ends a game that was going: the question came first.
      let midGame = try await Self.session(suite, headers: auth) { inbound, outbound, frames in
        try await outbound.write(.text(Self.start))
        var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
        if case .text(let text)? = try await iterator.next() { frames.append(text) }
        try await outbound.write(.binary(ByteBuffer(bytes: [1, 2, 3])))
        try await Self.answerUntilClosed(iterator, outbound, frames)
      }
      XCTAssertEqual(midGame.closeCode, 1003, "\(midGame)")
      XCTAssertNotNil(midGame.frames.first?["question"], "\(midGame.frames)")
      XCTAssertEqual(suite.gateway.playSockets.openSockets, 0)

      // A browser that leaves mid-game (its close, here) cancels the Play call on scoring.
      let left = try await Self.session(suite, headers: auth) { inbound, outbound, frames in
        try await outbound.write(.text(Self.start))
        var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
        if case .text(let text)? = try await iterator.next() { frames.append(text) }
        XCTAssertEqual(Self.playCalls(suite), 1, "the game is on")
      }
      XCTAssertNotNil(left.frames.first?["question"], "\(left.frames)")
      let deadline = ContinuousClock.now + .seconds(10)
      while Self.playCalls(suite) > 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
      XCTAssertEqual(Self.playCalls(suite), 0, "the RPC ended with the socket")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  func testExpiredTicketIsRefused() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags.merging(["play-ticket-ttl-ms": "100"]) { $1 })
    do {
      let token = try await suite.signIn("player@example.com", name: "Player")
      let ticket = try await self.ticket(suite, bearer: token)
      try await Task.sleep(for: .milliseconds(150))
      let late = try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(ticket)", Self.playDemo)
      XCTAssertEqual(late.closeCode, 1008, "\(late)")
      XCTAssertTrue(late.reason?.contains("expired") == true, "\(late)")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// A handshake takes from the caller's rate limit like a request: past it the socket is
  /// closed with 4008 (RESOURCE_EXHAUSTED) and no Play call is made.
  func testHandshakesAreRateLimited() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags.merging(["rate-limit": "0.01", "rate-limit-burst": "3"]) { $1 })
    do {
      // Register and login take from the client address's bucket; the sockets, once the token
      // is verified, from the user's: the first takes one of its three.
      let token = try await suite.signIn("limited@example.com", name: "Lim")
      let headers: HTTPFields = [.authorization: "Bearer \(token)"]
      let first = try await Self.session(suite, headers: headers) { _, outbound, _ in try await outbound.close(.normalClosure, reason: nil) }
      XCTAssertNotEqual(first.closeCode, 4008, "\(first)")
      let before = Self.finishedPlayCalls(suite)
      var sessions: [Session] = []
      for _ in 0..<4 { sessions.append(try await Self.session(suite, headers: headers, Self.playDemo)) }
      // Two more games fit the burst; the two after them are refused.
      self.assertFinished(sessions[0])
      self.assertFinished(sessions[1])
      for refused in sessions.dropFirst(2) {
        XCTAssertEqual(refused.closeCode, 4008, "\(refused)")
        XCTAssertTrue(refused.reason?.contains("rate limit exceeded") == true, "\(refused)")
        XCTAssertTrue(refused.frames.isEmpty)
      }
      XCTAssertEqual(Self.finishedPlayCalls(suite), before + 2, "a refused socket makes no Play call")
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// A ticket is spent only when its socket is let through: one refused because the caller's
  /// rate limit is spent can be used once the limit allows again (within the ticket's 30 s).
  func testATicketRefusedForTheRateLimitIsNotSpent() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags.merging(["rate-limit": "1", "rate-limit-burst": "3"]) { $1 })
    do {
      let token = try await suite.signIn("patient@example.com", name: "Pat")
      // The user's bucket: the ticket takes one of three, two reads the rest.
      let ticket = try await self.ticket(suite, bearer: token)
      for _ in 0..<2 { _ = try await suite.request("GET", "/api/v1/me", bearer: token) }
      let refused = try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(ticket)", Self.playDemo)
      XCTAssertEqual(refused.closeCode, 4008, "\(refused)")
      // A second later the bucket has a token again, and the same ticket opens the game.
      try await Task.sleep(for: .milliseconds(1_200))
      self.assertFinished(try await Self.session(suite, "\(PlayRoutes.socket)?ticket=\(ticket)", Self.playDemo))
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// A draining gateway (SIGTERM under a ServiceGroup, as `quizwire up` runs it) does not wait
  /// for open games: the WebSocket layer closes each socket (1000 with no `finished` before
  /// it, so a page tells it from a finished game and resumes elsewhere) and the gateway stops.
  func testADrainingGatewayClosesItsSockets() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags)
    do {
      let token = try await suite.signIn("player@example.com", name: "Player")
      var settings = suite.gateway.settings
      (settings.httpPort, settings.adminPort) = (0, 0)
      let gateway = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
      let group = ServiceGroup(services: [gateway], logger: Logger(label: "drain-test"))
      let running = Task { try await group.run() }
      let address = try await gateway.addresses().http
      let frames = Frames()
      let close = try await WebSocketClient.connect(
        url: "http://\(address)\(PlayRoutes.socket)", configuration: .init(additionalHeaders: [.authorization: "Bearer \(token)"]),
        logger: Self.logger
      ) { inbound, outbound, _ in
        try await outbound.write(.text(Self.start))
        var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
        if case .text(let text)? = try await iterator.next() { frames.append(text) }
        await group.triggerGracefulShutdown()
        while let message = try await iterator.next() { if case .text(let text) = message { frames.append(text) } }
      }
      XCTAssertEqual(close.map { Int(UInt16(webSocketErrorCode: $0.closeCode)) }, 1000)
      XCTAssertNotNil(frames.all.first?["question"], "\(frames.all)")
      XCTAssertFalse(frames.all.contains { $0["finished"] != nil }, "\(frames.all)")
      let stopped = await endsByItself(running)
      XCTAssertTrue(stopped, "the gateway stopped by itself, not held up by the socket")
      XCTAssertEqual(gateway.playSockets.openSockets, 0)
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }

  /// What the stalled client saw of the gateway while it was not reading.
  final class Stall: Sendable {
    struct Sample {
      var framesSent = 0
      var maxBytesInFlight = 0
      var rssGrowth = 0
      var stuck = false
    }
    let sample = Mutex(Sample())
  }

  /// The process's resident memory in bytes (Linux), 0 where unknown.
  static func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let pages = text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
  }

  /// A client that stops reading while the service keeps producing: the gateway stops taking
  /// responses from the RPC (frames in flight stay at one, the count of frames sent stops
  /// short of what the service has to say), its memory stays flat, and once the client reads
  /// again every response arrives, in order, and the game finishes.
  func testAClientThatStopsReadingStallsTheRPCAndResumesIntact() async throws {
    let suite = try await GatewayHarness.start(gatewayFlags: Self.flags)
    do {
      let token = try await suite.signIn("player@example.com", name: "Player")
      let stats = suite.gateway.playSockets
      // Each answer naming no current question is answered with a Rejected event of about
      // 32 KB (the id twice): 400 of them are 12.8 MB, well past what the sockets' kernel
      // buffers (a few MB on loopback) can hide.
      let count = 400
      let bogus = String(repeating: "z", count: 16000)
      let stall = Stall()
      let before = Self.residentBytes()
      let session = try await Self.session(suite, headers: [.authorization: "Bearer \(token)"]) { inbound, outbound, frames in
        var iterator = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
        try await outbound.write(.text(Self.start))
        guard case .text(let first)? = try await iterator.next() else { return }
        frames.append(first)
        for _ in 0..<count { try await outbound.write(.text(#"{"answer":{"questionId":"\#(bogus)"}}"#)) }
        // Not reading: wait until the bridge is stuck on a socket write (one frame in flight,
        // nothing more sent for 300 ms): the RPC's next response stays in the RPC.
        var last = -1
        var stuckSince: ContinuousClock.Instant?
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
          let (sent, inFlight, bytes) = (stats.framesSent, stats.framesInFlight, stats.bytesInFlight)
          stall.sample.withLock { $0.maxBytesInFlight = max($0.maxBytesInFlight, bytes) }
          if sent != last || inFlight == 0 {
            (last, stuckSince) = (sent, inFlight == 0 ? nil : ContinuousClock.now)
          } else if let since = stuckSince, ContinuousClock.now - since > .milliseconds(300) {
            stall.sample.withLock { $0.stuck = true }
            break
          } else if stuckSince == nil {
            stuckSince = ContinuousClock.now
          }
          try await Task.sleep(for: .milliseconds(20))
        }
        let growth = Self.residentBytes() - before
        print("play backpressure: stalled after \(last) of \(count + 1) frames; RSS growth \(growth / 1024) KiB")
        stall.sample.withLock {
          $0.framesSent = last
          $0.rssGrowth = growth
        }
        // Reading again: the rest comes through, then the game is played to its end (the
        // first question, shown before the stall, is answered now). The answer goes out while
        // the backlog is read, not before: our own unsent bogus answers can still fill the
        // socket, and the gateway takes them only as the RPC drains — which needs this side
        // to read. Written first, the answer waited for ever (seen once in a full run).
        let answer = #"{"answer":{"questionId":"qq_demo_1",\#(Self.demoAnswers["qq_demo_1"]!)}}"#
        let resumed = Task { try await outbound.write(.text(answer)) }
        try await Self.answerUntilClosed(iterator, outbound, frames)
        try await resumed.value
      }
      let seen = stall.sample.withLock { $0 }
      XCTAssertTrue(seen.stuck, "the bridge waited on the socket")
      XCTAssertGreaterThan(seen.framesSent, 1, "some responses fit in the sockets' buffers")
      XCTAssertLessThan(seen.framesSent, count, "the RPC stalled while the client did not read")
      XCTAssertLessThanOrEqual(stats.maxFramesInFlight, 1, "one frame at a time between the RPC and the socket")
      XCTAssertLessThanOrEqual(seen.maxBytesInFlight, 40 << 10, "at most the one ~32 KB frame being written")
      XCTAssertLessThan(seen.rssGrowth, 64 << 20, "the process (gateway and services) did not buffer the 12.8 MB")
      let rejected = session.frames.compactMap { $0["rejected"] as? [String: Any] }
      XCTAssertEqual(rejected.count, count, "every response arrived after the stall")
      XCTAssertTrue(rejected.allSatisfy { $0["questionId"] as? String == bogus && $0["code"] as? Int == 9 })
      self.assertFinished(session)
      XCTAssertEqual(stats.framesInFlight, 0)
    } catch {
      await suite.stop()
      throw error
    }
    await suite.stop()
  }
}
