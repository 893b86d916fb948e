import Foundation
import XCTest

/// `quizwire jobs work|list|retry` as an operator runs them (SQLite; the PostgreSQL run with
/// three killed-and-surviving workers is QuizServiceTests/JobWorkerProcessTests).
final class JobsCLITests: XCTestCase {
  func executable() throws -> String {
    let path = CLITests.root.appendingPathComponent(".build/debug/quizwire").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
      if ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" { XCTFail("\(path) missing: `swift build` first") }
      throw XCTSkip("\(path) not built")
    }
    return path
  }

  func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try self.executable())
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  func testWorkSchedulesTheRecurringPurgeListShowsItAndSIGTERMStopsTheWorker() throws {
    let dir = NSTemporaryDirectory() + "quizwire-jobs-cli-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let executable = try self.executable()

    let worker = try CLITests.Server(executable, ["jobs", "work", "auth", "--data-dir", dir, "--jobs-concurrency", "1"])
    defer { worker.stop() }
    let end = Date().addingTimeInterval(30)
    while !worker.output.contains(where: { $0.contains("job worker started") }), Date() < end { Thread.sleep(forTimeInterval: 0.05) }
    XCTAssertTrue(worker.output.contains { $0.contains("job worker started") }, "\(worker.output.suffix(5))")
    // The maintenance loop enqueues the next hourly slot right after the start.
    Thread.sleep(forTimeInterval: 0.5)
    worker.process.terminate()
    let status = worker.waitForExit(timeout: 5)
    XCTAssertEqual(status, 0, "SIGTERM stops the worker cleanly")
    XCTAssertTrue(worker.output.contains { $0.contains("job worker stopped") })

    let list = try self.run(["jobs", "list", "auth", "--data-dir", dir])
    XCTAssertEqual(list.status, 0)
    XCTAssertTrue(list.stdout.contains("auth.purge_expired_tokens: due 0, scheduled 1, running 0, dead 0"), list.stdout)

    let retry = try self.run(["jobs", "retry", "auth", "12345", "--data-dir", dir])
    XCTAssertNotEqual(retry.status, 0, "no dead job 12345")

    let unknown = try self.run(["jobs", "work", "auth", "--data-dir", dir, "--framed-port", "1"])
    XCTAssertNotEqual(unknown.status, 0, "a worker has no listeners: --framed-port is refused, not ignored")
  }
}
