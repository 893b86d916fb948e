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

/// `quizwire serve quiz` as a child process (RSS is process-wide): exporting 10,000 large
/// quizzes (~100 MB of answers) streams them with the server's memory growing by less than
/// 50 MB — the export holds a batch, never the table.
final class QuizExportMemoryTests: XCTestCase {
  func testExportOfTenThousandQuizzesStaysWithinFiftyMegabytesOfServerMemory() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // ~10 KB per quiz: holding all of them would cost ~100 MB.
    let db = try Database(.sqlite(path: dir + "/quiz.sqlite"), logger: TestDatabases.logger)
    try await QuizRepositoryTests.migrate(db)
    let prompt = String(repeating: "How do structured tasks propagate cancellation? ", count: 20)
    for batch in 0..<20 {
      try await db.transaction { uow in
        for n in (batch * 500)..<((batch + 1) * 500) {
          var quiz = QuizRepositoryTests.record(n, author: "u-bulk", state: .published, questions: 10)
          quiz.questions = quiz.questions?.map { q in
            var q = q
            q.prompt = prompt
            return q
          }
          try await QuizRepository().insert(quiz, in: uow)
        }
      }
    }
    try await db.shutdown()

    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = ["quiz"]
    let auth = try await AuthServer.make(options: options, host: ServiceHost.Config(), logSink: CapturedLog().sink)
    let authRun = Task { try await auth.host.run() }
    defer {
      auth.host.beginGracefulShutdown()
      authRun.cancel()
    }
    let server = try QuizServerProcess(
      ["--data-dir", dir, "--auth-target", try await auth.host.addresses().framed],
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: "quiz")])
    defer { server.stop() }
    let framed = try server.framedAddress()

    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(framed)!]))
    try await withGRPCClient(transport: transport) { client in
      let quiz = Quiz_V1_QuizService.Client(wrapping: client)
      _ = try await quiz.listQuizzes(.with { $0.pageSize = 1 })  // warm: connections, caches, first allocations
      let before = try server.rssMB()
      let (count, streamingPeak) = try await quiz.exportQuizzes(.init()) { response in
        var count = 0
        var peak = before
        for try await _ in response.messages {
          count += 1
          if count % 500 == 0 { peak = max(peak, try server.rssMB()) }
        }
        return (count, peak)
      }
      let peak = max(streamingPeak, try server.rssMB())
      print("export of \(count) quizzes: server RSS \(before) → peak \(peak) MB")
      XCTAssertEqual(count, 10_000)
      XCTAssertLessThan(peak - before, 50, "server RSS grew by \(peak - before) MB")
    }
  }
}

/// `quizwire serve quiz` on ephemeral ports as a child process.
final class QuizServerProcess: Sendable {
  private let served: ServedProcess

  init(_ settings: [String], environment: [String: String]) throws {
    self.served = try ServedProcess("quiz", settings: settings, environment: environment)
  }

  /// The framed address from the start-up line, once the host serves.
  func framedAddress(timeout: TimeInterval = 60) throws -> String {
    guard let framed = try self.served.addresses(timeout: timeout)["framed"] else {
      throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no address line; output: \(self.served.lines.suffix(5))"])
    }
    return framed
  }

  func rssMB() throws -> Double { try self.served.rssMB() }

  func stop() { self.served.stop() }
}
