import Foundation

/// One-shot child processes for tests (a CLI command, an outside client's script).
public enum ChildCommand {
  /// Runs `arguments` (looked up in PATH) to completion, `timeout` at most, and returns its exit
  /// status and standard output (standard error is dropped).
  public static func run(_ arguments: [String], timeout: TimeInterval = 60) throws -> (status: Int32, stdout: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// Whether a shell command exits 0 (its output dropped): `succeeds("python3 -c 'import grpc'")`.
  public static func succeeds(_ command: String) throws -> Bool {
    try self.run(["sh", "-c", command + " >/dev/null 2>&1"]).status == 0
  }
}
