import BenchService
import FramedTransport
import Foundation
import GRPCCore
import ServiceKit
import XCTest

/// The C client (Tests/Interop/c: protobuf-c + zlib, written from docs/protocol.md alone)
/// against an in-process `ServiceHost`: builds it with make, runs every interop case of
/// `run-interop.sh` (plain, then under valgrind) and a few `qwcall` calls directly.
///
/// Without `cc`, `make`, `protoc-c`, the protobuf-c / zlib headers (or valgrind for the valgrind
/// pass) the test is skipped with a printed reason — or fails under `QUIZWIRE_REQUIRE_ALL=1`.
final class CClientInteropTests: XCTestCase {
  /// <repo>/Tests/InteropTests/CClientInteropTests.swift → <repo>
  static let repoRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  static let cDir = repoRoot.appendingPathComponent("Tests/Interop/c")
  static let vectorsDir = repoRoot.appendingPathComponent("Tests/FramedWireTests/Vectors")

  /// Every case run-interop.sh runs; each must report "ok NAME".
  static let cases = [
    "unary", "unary-consecutive-ids", "server-stream", "client-stream", "client-stream-no-messages",
    "bidi", "health", "health-unknown-service", "unknown-method", "gzip", "deflate", "gzip-bidi",
    "large-message-200000", "large-message-1000000", "server-stream-flow-control", "deadline",
    "deadline-server", "deadline-server-mid-message", "cancel", "version-rejection", "vectors",
  ]

  var requireAll: Bool { ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" }

  func testCClientAgainstServiceHost() async throws {
    guard try await self.prerequisitesMet() else { return }

    // Build (protoc-c generates the protobuf code into build/gen).
    let make = try await Self.run("/usr/bin/env", ["make", "-C", Self.cDir.path, "all"], timeout: 120)
    XCTAssertEqual(make.status, 0, "make failed:\n\(make.output)")
    guard make.status == 0 else { return }

    let host = try ServiceHost(
      name: "bench.v1.EchoService", services: [EchoService()], config: ServiceHost.Config(), logSink: CapturedLog().sink)
    let serving = Task { try await host.run() }
    do {
      let addrs = try await host.addresses()
      try await self.directCalls(addr: addrs.framed)
      try await self.interopScript(addr: addrs.framed, valgrind: false)
      if try await self.valgrindAvailable() {
        try await self.interopScript(addr: addrs.framed, valgrind: true)
      }
    } catch {
      XCTFail("interop run failed: \(error)")
    }
    host.beginGracefulShutdown()
    await Self.awaitShutdown(serving, timeout: 15)
  }

  // MARK: - Cases

  /// A few calls asserted here directly, so the basic contract is visible in this file.
  func directCalls(addr: String) async throws {
    let qwcall = Self.cDir.appendingPathComponent("build/qwcall").path

    let unary = try await Self.run(qwcall, [addr, "bench.v1.EchoService/Unary", "--payload", "hi"], timeout: 20)
    XCTAssertEqual(unary.status, 0, unary.output)
    XCTAssertTrue(unary.lines.contains { $0.hasPrefix("message index=0 payload_len=2 payload_hex=6869 ") }, unary.output)
    XCTAssertEqual(unary.lines.last { $0.hasPrefix("status ") }?.trimmingCharacters(in: .whitespaces), "status 0", unary.output)

    let health = try await Self.run(qwcall, [addr, "grpc.health.v1.Health/Check"], timeout: 20)
    XCTAssertEqual(health.status, 0, health.output)
    XCTAssertTrue(health.lines.contains("health status=1 SERVING"), health.output)

    let unknown = try await Self.run(qwcall, [addr, "grpc.health.v1.Health/Check", "--service", "nope"], timeout: 20)
    XCTAssertEqual(unknown.status, 5, unknown.output)
    XCTAssertTrue(unknown.lines.contains("status 5 unknown service \"nope\""), unknown.output)
    XCTAssertTrue(unknown.lines.contains("status_source trailers"), unknown.output)

    let vectors = try await Self.run(
      Self.cDir.appendingPathComponent("build/qwvectors").path, [Self.vectorsDir.path], timeout: 60)
    XCTAssertEqual(vectors.status, 0, vectors.output)
    XCTAssertTrue(vectors.lines.last?.hasSuffix(" passed, 0 failed") ?? false, vectors.output)
  }

  /// run-interop.sh: one "ok NAME" / "FAIL NAME: why" line per case, "N passed, M failed" last.
  func interopScript(addr: String, valgrind: Bool) async throws {
    let script = Self.cDir.appendingPathComponent("run-interop.sh").path
    let args = valgrind ? ["--valgrind", addr] : [addr]
    let label = valgrind ? "valgrind" : "plain"
    let result = try await Self.run("/bin/bash", [script] + args, timeout: valgrind ? 240 : 120)
    print("run-interop.sh (\(label)):\n\(result.output)")
    XCTAssertEqual(result.status, 0, "run-interop.sh \(label) failed:\n\(result.output)")
    for line in result.lines where line.hasPrefix("FAIL ") {
      XCTFail("\(label): \(line)")
    }
    for name in Self.cases {
      XCTAssertTrue(
        result.lines.contains { $0 == "ok \(name)" || $0.hasPrefix("ok \(name) (") },
        "\(label): case \(name) did not pass")
    }
    let summary = result.lines.last ?? ""
    XCTAssertTrue(summary.hasSuffix(" passed, 0 failed"), "\(label): \(summary)")
  }

  // MARK: - Prerequisites

  /// Skips (printing why) or, under QUIZWIRE_REQUIRE_ALL=1, fails when a tool is missing.
  func prerequisitesMet() async throws -> Bool {
    var missing: [String] = []
    for tool in ["cc", "make", "protoc-c"] {
      let found = try await Self.shell("command -v \(tool)")
      if !found { missing.append("`\(tool)` not found") }
    }
    let protobufC = try await Self.shell(Self.includeCheck("protobuf-c/protobuf-c.h"))
    if !protobufC { missing.append("protobuf-c headers not found (Debian: libprotobuf-c-dev)") }
    let zlib = try await Self.shell(Self.includeCheck("zlib.h"))
    if !zlib { missing.append("zlib headers not found (Debian: zlib1g-dev)") }
    guard !missing.isEmpty else { return true }
    let reason =
      "C interop client: " + missing.joined(separator: "; ")
      + " (Debian: apt-get install gcc make libprotobuf-c-dev protobuf-c-compiler zlib1g-dev)"
    if self.requireAll {
      XCTFail("\(reason) — required because QUIZWIRE_REQUIRE_ALL=1")
      return false
    }
    print("CClientInteropTests skipped: \(reason)")
    throw XCTSkip(reason)
  }

  /// A shell command that succeeds when `cc` can include `header`.
  static func includeCheck(_ header: String) -> String {
    "command -v cc >/dev/null && printf '#include <\(header)>\\n' | cc -E -x c - -o /dev/null"
  }

  func valgrindAvailable() async throws -> Bool {
    let found = try await Self.shell("command -v valgrind")
    if found { return true }
    let reason = "valgrind not found: the valgrind pass of the C interop client did not run"
    if self.requireAll {
      XCTFail("\(reason) — required because QUIZWIRE_REQUIRE_ALL=1")
    } else {
      print("CClientInteropTests: \(reason) (skipped)")
    }
    return false
  }

  // MARK: - Processes

  struct ProcessResult {
    var status: Int32
    var output: String
    /// Output lines without empty ones (so `last` is the last printed line).
    var lines: [String] { self.output.split(separator: "\n").map(String.init) }
  }

  static func shell(_ command: String) async throws -> Bool {
    try await self.run("/bin/sh", ["-c", command + " >/dev/null 2>&1"], timeout: 30).status == 0
  }

  /// Runs a process with stdout+stderr into a temporary file (no pipe to drain), polling for its
  /// end without blocking a concurrency thread; kills it after `timeout` seconds.
  static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval) async throws -> ProcessResult {
    let outURL = FileManager.default.temporaryDirectory
      .appendingPathComponent("qwinterop-\(UUID().uuidString).out")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: outURL) }
    let out = try FileHandle(forWritingTo: outURL)
    defer { try? out.close() }

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = out
    process.standardError = out
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while process.isRunning {
      if Date() > deadline {
        timedOut = true
        process.terminate()
        break
      }
      try await Task.sleep(nanoseconds: 20_000_000)
    }
    while process.isRunning { try await Task.sleep(nanoseconds: 20_000_000) }
    var output = String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self)
    if timedOut { output += "\n[killed after \(Int(timeout)) s]" }
    return ProcessResult(status: timedOut ? -1 : process.terminationStatus, output: output)
  }

  /// Waits for `run()` to return after beginGracefulShutdown, at most `timeout` seconds.
  static func awaitShutdown(_ serving: Task<Void, any Error>, timeout: TimeInterval) async {
    let finished = await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        _ = await serving.result
        return true
      }
      group.addTask {
        try? await Task.sleep(nanoseconds: UInt64(timeout * 1_000_000_000))
        return false
      }
      let first = await group.next() ?? false
      group.cancelAll()
      return first
    }
    if !finished { serving.cancel() }
  }
}
