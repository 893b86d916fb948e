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

/// `quizwire serve quiz` on ephemeral ports as a child process, its JSON log read line by line.
// @unchecked: `lines` and `partial` are only touched under `lock`; `process` and `pipe` are set
// up in `init` and only read afterwards.
final class QuizServerProcess: @unchecked Sendable {
  private let process = Process()
  private let pipe = Pipe()
  private let lock = NSLock()
  private var lines: [String] = []
  private var partial = Data()

  init(_ settings: [String], environment: [String: String]) throws {
    self.process.executableURL = URL(fileURLWithPath: try Self.executable())
    self.process.arguments = ["serve", "quiz", "--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--grace", "1"] + settings
    self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    self.process.standardOutput = self.pipe
    self.process.standardError = FileHandle.nullDevice
    self.pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
      let data = handle.availableData
      guard let self, !data.isEmpty else { return }
      self.lock.lock()
      defer { self.lock.unlock() }
      self.partial += data
      while let newline = self.partial.firstIndex(of: UInt8(ascii: "\n")) {
        self.lines.append(String(decoding: self.partial[..<newline], as: UTF8.self))
        self.partial = Data(self.partial[(newline + 1)...])
      }
    }
    try self.process.run()
  }

  static func executable(file: StaticString = #filePath) throws -> String {
    var url = URL(fileURLWithPath: "\(file)")
    while url.path != "/", !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
      url.deleteLastPathComponent()
    }
    let candidate = url.appendingPathComponent(".build/debug/quizwire").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
      throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "quizwire executable not built (swift build)"])
    }
    return candidate
  }

  /// The framed address from the start-up line, once the host serves.
  func framedAddress(timeout: TimeInterval = 60) throws -> String {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end, self.process.isRunning {
      let output = self.lock.withLock { self.lines }
      for line in output {
        if let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], let framed = json["framed"] {
          return framed
        }
      }
      Thread.sleep(forTimeInterval: 0.05)
    }
    let tail = self.lock.withLock { self.lines.suffix(5) }
    throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no address line; output: \(tail)"])
  }

  func rssMB() throws -> Double {
    let status = try String(contentsOfFile: "/proc/\(self.process.processIdentifier)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { throw CocoaError(.fileReadCorruptFile) }
    return kb / 1024
  }

  func stop() {
    guard self.process.isRunning else { return }
    self.process.terminate()  // SIGTERM drains, bounded by --grace
    let end = Date().addingTimeInterval(5)
    while self.process.isRunning, Date() < end { Thread.sleep(forTimeInterval: 0.05) }
    if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
  }
}
