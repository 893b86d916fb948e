import Foundation
import Storage
import TestSupport
import XCTest

/// `quizwire events dlq list|retry` as an operator runs them against a service's database.
final class DeadLetterCLITests: XCTestCase {
  func testListShowsParkedEventsAndRetryQueuesThemForTheRunningConsumer() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    XCTAssertEqual(try quizwire(["migrate", "quiz", "--data-dir", dir]).status, 0)
    let empty = try quizwire(["events", "dlq", "list", "quiz", "--data-dir", dir])
    XCTAssertEqual(empty.status, 0)
    XCTAssertTrue(empty.stdout.contains("no dead letters"), empty.stdout)

    let db = try Database(.sqlite(path: dir + "/quiz.sqlite"), logger: TestDatabases.logger)
    let event = EventEnvelope(offset: 41, type: "user.renamed", key: "u_1", keyVersion: 3, payload: Data("secret-ish payload".utf8), timeMs: 0)
    try await db.transaction { uow in
      try await ConsumerStore.park(
        group: "quiz.author-names", feed: "auth.users", event: event, error: "no such quiz author", attempts: 5, nowMs: 0, in: uow)
    }
    let parked = try await db.read { try await ConsumerStore.deadLetters(in: $0) }
    let id = try XCTUnwrap(parked.first?.id)

    let list = try quizwire(["events", "dlq", "list", "quiz", "--data-dir", dir])
    XCTAssertEqual(list.status, 0)
    for part in [id, "parked", "quiz.author-names", "auth.users@41", "user.renamed", "u_1@3", "attempts 5", "no such quiz author"] {
      XCTAssertTrue(list.stdout.contains(part), "\(part) in \(list.stdout)")
    }
    XCTAssertFalse(list.stdout.contains("secret-ish"), "payloads are never shown")

    XCTAssertEqual(try quizwire(["events", "dlq", "retry", "quiz", id, "--data-dir", dir]).status, 0)
    let marked = try await db.read { try await ConsumerStore.deadLetters(state: .retry, in: $0) }
    XCTAssertEqual(marked.map(\.id), [id], "queued for the running consumer to replay")
    XCTAssertNotEqual(try quizwire(["events", "dlq", "retry", "quiz", id, "--data-dir", dir]).status, 0, "nothing parked is left")
    XCTAssertNotEqual(try quizwire(["events", "dlq", "list", "quiz", "--data-dir", dir, "--state", "bogus"]).status, 0)
    try await db.shutdown()
  }
}

private func quizwire(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
  try ChildCommand.run([try ServedProcess.quizwireExecutable()] + arguments)
}
