import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage
import Synchronization
import TestSupport
import XCTest

@testable import ScoringService

/// Play reads its requests only as fast as it handles them: a player who sends answers while
/// the handler is stuck (here: on a response write the client never reads) leaves them in the
/// transport, where flow control stalls the client, instead of in the server's memory.
final class PlayReadAheadTests: XCTestCase {
  /// Requests handed out, counted as the handler's reader pulls them.
  final class CountingRequests: AsyncSequence, Sendable {
    typealias Element = Scoring_V1_PlayRequest
    let first: Scoring_V1_PlayRequest
    let answers: Int
    private let pulledCount = Mutex(0)
    var pulled: Int { self.pulledCount.withLock { $0 } }

    init(first: Scoring_V1_PlayRequest, answers: Int) {
      self.first = first
      self.answers = answers
    }

    struct AsyncIterator: AsyncIteratorProtocol {
      let source: CountingRequests
      mutating func next() async throws -> Scoring_V1_PlayRequest? {
        let n = self.source.pulledCount.withLock { n -> Int? in
          guard n <= self.source.answers else { return nil }
          n += 1
          return n
        }
        guard let n else { return nil }
        if n == 1 { return self.source.first }
        // Answers to a question the attempt doesn't have: each is rejected with an event.
        return .with { $0.answer = .with { $0.questionID = "not-a-question" } }
      }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: self) }
  }

  /// Blocks every write while `open` is false; counts the writes that went through.
  final class GatedWriter: RPCWriterProtocol, Sendable {
    typealias Element = Scoring_V1_PlayEvent
    private let state = Mutex((open: false, waiting: 0, written: 0))
    var waiting: Int { self.state.withLock { $0.waiting } }
    var written: Int { self.state.withLock { $0.written } }
    func open() { self.state.withLock { $0.open = true } }

    func write(_ element: Scoring_V1_PlayEvent) async throws {
      self.state.withLock { $0.waiting += 1 }
      while !self.state.withLock({ $0.open }) { try await Task.sleep(for: .milliseconds(2)) }
      self.state.withLock {
        $0.waiting -= 1
        $0.written += 1
      }
    }

    func write(contentsOf elements: some Sequence<Scoring_V1_PlayEvent>) async throws {
      for e in elements { try await self.write(e) }
    }
  }

  struct NoQuizzes: QuizSource {
    func quiz(id: String) async throws -> QuizSnapshot { throw RPCError(code: .unavailable, message: "no quiz service here") }
    func summary(id: String) async throws -> QuizSummary { throw RPCError(code: .unavailable, message: "no quiz service here") }
    func missing(ids: [String]) async throws -> [String] { [] }
    func invalidate(id: String) {}
    func invalidateAll() {}
  }

  struct NoNames: NameDirectory {
    func names(ids: [String]) async -> [String: String] { [:] }
    func renamed(userID: String, to name: String) {}
    func forgetAll() {}
  }

  func testTheHandlerReadsAtMostOneRequestAheadWhileItIsBlocked() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let db = try Database(.sqlite(path: dir + "/scoring.sqlite"), logger: TestDatabases.logger)
    try await AttemptRepositoryTests.migrate(db)
    // A fixed clock: no question's deadline ever passes, so only requests drive the handler.
    let now: Int64 = 1_000
    _ = try await db.transaction { uow in try await AttemptRepository().start(AttemptRepositoryTests.started("at_1", user: "u1", at: now), in: uow) }
    let service = ScoringService(
      db: db, quizzes: NoQuizzes(), names: NoNames(),
      hub: LeaderboardHub(load: { _ in TopBoard(rows: [], version: 0, hidden: false) }, present: { _, _ in [] }),
      logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, now: { now })

    let requests = CountingRequests(first: .with { $0.resume = .with { $0.attemptID = "at_1" } }, answers: 40)
    let writer = GatedWriter()
    let descriptor = Scoring_V1_ScoringService.Method.Play.descriptor
    var serviceContext = ServiceContext.topLevel
    let call = CallInfo(requestID: "r1", method: descriptor, peer: "test")
    call.principal = Principal(kind: .user, subject: "u1")
    serviceContext.call = call
    let play = Task { [serviceContext] in
      try await ServiceContext.withValue(serviceContext) {
        try await withServerContextRPCCancellationHandle { handle in
          try await service.play(
            request: RPCAsyncSequence(wrapping: requests), response: RPCWriter(wrapping: writer),
            context: ServerContext(descriptor: descriptor, remotePeer: "test", localPeer: "test", cancellation: handle))
        }
      }
    }

    // The resume is handled: the handler now waits to write the first question.
    let blocked = await Self.eventually { writer.waiting == 1 }
    XCTAssertTrue(blocked, "the handler reached its first response write")
    // However long it stays blocked, it has the resume and at most one answer: the other 39
    // are still with the client. (Before, a reader task drained all 41 into an unbounded buffer.)
    let deadline = ContinuousClock.now + .milliseconds(200)
    while ContinuousClock.now < deadline {
      XCTAssertLessThanOrEqual(requests.pulled, 2, "read ahead of the blocked handler")
      if requests.pulled > 2 { break }
      try await Task.sleep(for: .milliseconds(5))
    }

    // Unblocked, it reads and answers every one: the question, then one rejection per answer.
    writer.open()
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await play.value }
      group.addTask {
        try await Task.sleep(for: .seconds(20))
        play.cancel()
      }
      try await group.next()
      group.cancelAll()
    }
    XCTAssertEqual(requests.pulled, 41)
    XCTAssertEqual(writer.written, 41)
    try await db.shutdown()
  }

  static func eventually(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if condition() { return true }
      try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
  }
}
