import Foundation
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

struct ServerDidNotStart: Error, CustomStringConvertible {
  var output: [String]
  var description: String { "the server printed no address line; its output: \(output.suffix(5))" }
}

/// The `quizwire` executable as a user runs it: a real process, real signals.
final class CLITests: XCTestCase {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  func executable() throws -> String {
    let path = Self.root.appendingPathComponent(".build/debug/quizwire").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
      if ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" {
        XCTFail("\(path) missing: `swift build` first")
      }
      throw XCTSkip("\(path) not built")
    }
    return path
  }

  /// A running `quizwire serve …` child: its stdout lines are collected as they come.
  final class Server: @unchecked Sendable {
    // @unchecked: `lines` is only touched under `lock`; the process handle is immutable.
    let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial = Data()

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
      self.process.executableURL = URL(fileURLWithPath: executable)
      self.process.arguments = arguments
      self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
      self.process.standardOutput = self.pipe
      self.process.standardError = FileHandle.nullDevice
      self.pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
        let data = handle.availableData
        guard let self, !data.isEmpty else { return }
        self.append(data)
      }
      try self.process.run()
    }

    private func append(_ data: Data) {
      self.lock.lock()
      self.partial += data
      while let newline = self.partial.firstIndex(of: UInt8(ascii: "\n")) {
        self.lines.append(String(decoding: self.partial[..<newline], as: UTF8.self))
        self.partial = Data(self.partial[(newline + 1)...])
      }
      self.lock.unlock()
    }

    var output: [String] {
      self.lock.lock()
      defer { self.lock.unlock() }
      return self.lines
    }

    /// The `{"service":…,"framed":…,"grpc":…,"admin":…}` line, once it appears.
    func addresses(timeout: TimeInterval = 30) throws -> [String: String] {
      let end = Date().addingTimeInterval(timeout)
      while Date() < end {
        for line in self.output {
          if let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], json["framed"] != nil {
            return json
          }
        }
        Thread.sleep(forTimeInterval: 0.05)
      }
      throw ServerDidNotStart(output: self.output)
    }

    func waitForExit(timeout: TimeInterval) -> Int32? {
      let end = Date().addingTimeInterval(timeout)
      while self.process.isRunning && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
      guard !self.process.isRunning else { return nil }
      // Take what the handler hasn't delivered yet (the last lines are written just before exit).
      self.pipe.fileHandleForReading.readabilityHandler = nil
      self.append(self.pipe.fileHandleForReading.readDataToEndOfFile())
      return self.process.terminationStatus
    }

    func stop() {
      if self.process.isRunning { self.process.terminate() }
      _ = self.waitForExit(timeout: 15)
    }
  }

  func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try self.executable())
    p.arguments = arguments
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  func testSIGTERMDrainsAndExitsZero() async throws {
    let server = try Server(try self.executable(), ["serve", "bench", "--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--grace", "5"])
    defer { server.stop() }
    let addresses = try server.addresses()
    let admin = try XCTUnwrap(addresses["admin"])
    var ready = false
    for _ in 0..<100 where !ready {
      if let (_, response) = try? await URLSession.shared.data(from: URL(string: "http://\(admin)/readyz")!) {
        ready = (response as? HTTPURLResponse)?.statusCode == 200
      }
      if !ready { try await Task.sleep(for: .milliseconds(50)) }
    }
    XCTAssertTrue(ready)
    let echo = try self.run(["call", "--framed", addresses["framed"]!, "bench.v1.EchoService/Unary", #"{"payload":"aGk="}"#])
    XCTAssertEqual(echo.status, 0)
    XCTAssertTrue(echo.stdout.contains("aGk="))
    server.process.terminate()  // SIGTERM
    XCTAssertEqual(server.waitForExit(timeout: 15), 0, "drains and exits 0")
    let messages = server.output.compactMap { line in
      (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["message"] as? String
    }
    XCTAssertTrue(messages.contains("draining"), "\(messages)")
    XCTAssertTrue(messages.contains("drained"), "\(messages)")
    XCTAssertTrue(messages.contains("rpc"), "the access log saw the call")
  }

  func testCallRegistersAndLogsInAgainstTheAuthService() throws {
    let dir = NSTemporaryDirectory() + "quizwire-cli-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let server = try Server(try self.executable(), ["serve", "auth", "--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--data-dir", dir])
    defer { server.stop() }
    let framed = try XCTUnwrap(try server.addresses(timeout: 60)["framed"])
    let password = "correct horse battery"
    let register = try self.run([
      "call", "--framed", framed, "auth.v1.AuthService/Register",
      #"{"email":"cli@example.com","password":"\#(password)","display_name":"Cli"}"#,
    ])
    XCTAssertEqual(register.status, 0)
    XCTAssertTrue(register.stdout.contains(#""email":"cli@example.com""#), register.stdout)
    let login = try self.run(["call", "--framed", framed, "auth.v1.AuthService/Login", #"{"email":"cli@example.com","password":"\#(password)"}"#])
    XCTAssertEqual(login.status, 0)
    let tokens = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(login.stdout.utf8)) as? [String: Any])
    let access = try XCTUnwrap(tokens["accessToken"] as? String)
    let me = try self.run(["call", "--framed", framed, "--metadata", "authorization=Bearer \(access)", "auth.v1.AuthService/GetMe"])
    XCTAssertEqual(me.status, 0)
    XCTAssertTrue(me.stdout.contains("cli@example.com"))
    let wrong = try self.run(["call", "--framed", framed, "auth.v1.AuthService/Login", #"{"email":"cli@example.com","password":"not the password"}"#])
    XCTAssertEqual(wrong.status, 16, "exit status is the gRPC code (UNAUTHENTICATED)")
    // Nothing secret reached the log.
    XCTAssertFalse(server.output.joined().contains(password))
    XCTAssertFalse(server.output.joined().contains(access))
  }

  func testMigrateAppliesAndAFailedStartExitsOneWithOneCriticalLine() throws {
    let dir = NSTemporaryDirectory() + "quizwire-cli-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let dry = try self.run(["migrate", "auth", "--dry-run", "--data-dir", dir])
    XCTAssertEqual(dry.status, 0)
    XCTAssertTrue(dry.stdout.contains("pending (dry run: nothing applied)"), dry.stdout)
    let applied = try self.run(["migrate", "auth", "--data-dir", dir])
    XCTAssertEqual(applied.status, 0)
    XCTAssertTrue(applied.stdout.contains("applied: 1, 2"), applied.stdout)
    XCTAssertEqual(try self.run(["keys", "rotate", "--data-dir", dir]).status, 0)
    // Signing keys sealed under the local key file can't be opened with another key: the
    // before-serving step fails, the process says so once and exits 1 instead of serving.
    let start = Date()
    let failed = try self.run(
      ["serve", "auth", "--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--data-dir", dir],
      environment: ["QUIZWIRE_AUTH_KEY_ENCRYPTION_KEY": "not-the-key"])
    XCTAssertEqual(failed.status, 1)
    XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    let critical = failed.stdout.split(separator: "\n").filter { $0.contains(#""level":"critical""#) }
    XCTAssertEqual(critical.count, 1, failed.stdout)
    XCTAssertTrue(critical.first?.contains("auth-key-encryption-key") ?? false, failed.stdout)
    XCTAssertFalse(failed.stdout.contains("not-the-key"))
    // Settings nobody reads are refused, not ignored.
    XCTAssertEqual(try self.run(["serve", "auth", "--no-such-setting", "1"]).status, 64)
  }
}
