import Foundation
import XCTest

/// `quizwire serve gateway` as an operator runs it: its settings, and a refusal naming the
/// missing one (the gateway's own behaviour over HTTP is GatewayTests).
final class GatewayCLITests: XCTestCase {
  /// Runs the executable to its end: exit status and standard output.
  func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
    let path = CLITests.root.appendingPathComponent(".build/debug/quizwire").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
      if ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" { XCTFail("\(path) missing: `swift build` first") }
      throw XCTSkip("\(path) not built")
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  func testHelpListsTheSettingsAndAMissingTargetIsRefused() throws {
    let help = try self.run(["serve", "gateway", "--help"])
    XCTAssertEqual(help.status, 0)
    for key in ["--http-port", "--admin-port", "--auth-target", "--quiz-target", "--scoring-target", "--body-limit"] {
      XCTAssertTrue(help.stdout.contains(key), "\(key) missing from:\n\(help.stdout)")
    }
    let missing = try self.run(["serve", "gateway", "--http-port", "0", "--admin-port", "0", "--auth-target", "127.0.0.1:7410"])
    XCTAssertNotEqual(missing.status, 0)
    let unknown = try self.run(["serve", "gateway", "--framed-port", "0"])
    XCTAssertNotEqual(unknown.status, 0, "a key the gateway doesn't read is refused")
  }
}
