import Foundation
import Synchronization

/// `quizwire serve <service>` as a child process, on ephemeral ports: for tests whose effect
/// is process-wide (RSS, descriptors, CPU). Collects the JSON log lines it prints, waits for
/// its address line, reads its memory and stops it (SIGTERM, then SIGKILL).
public final class ServedProcess: Sendable {
  /// What the child printed; a class so the pipe's handler can share it.
  private final class Output: Sendable {
    let state = Mutex<(lines: [String], partial: Data)>(([], Data()))
  }

  // Process isn't Sendable; it is set up in `init` and afterwards only read (pid, isRunning)
  // or signalled, which Foundation's Process allows from any thread.
  nonisolated(unsafe) private let process: Process
  private let output = Output()

  /// - Parameters:
  ///   - service: the registry name (`bench`, `auth`, `quiz`).
  ///   - settings: more `--key value` flags.
  ///   - environment: added to this process's environment.
  ///   - shellPrefix: a shell command run first in the same process (e.g. `ulimit -n 160`).
  public convenience init(
    _ service: String, settings: [String] = [], environment: [String: String] = [:], shellPrefix: String? = nil,
    file: StaticString = #filePath
  ) throws {
    try self.init(
      arguments: ["serve", service, "--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--grace", "1"] + settings,
      environment: environment, shellPrefix: shellPrefix, file: file)
  }

  /// `quizwire <arguments>`, any subcommand (`jobs work quiz …`).
  public init(arguments: [String], environment: [String: String] = [:], shellPrefix: String? = nil, file: StaticString = #filePath) throws {
    let executable = try Self.quizwireExecutable(file: file)
    let process = Process()
    if let shellPrefix {
      process.executableURL = URL(fileURLWithPath: "/bin/sh")
      process.arguments = ["-c", "\(shellPrefix) && exec \"$0\" \"$@\"", executable] + arguments
    } else {
      process.executableURL = URL(fileURLWithPath: executable)
      process.arguments = arguments
    }
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    self.process = process
    let output = self.output
    pipe.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      guard !data.isEmpty else { return }
      output.state.withLock { o in
        o.partial += data
        while let newline = o.partial.firstIndex(of: UInt8(ascii: "\n")) {
          o.lines.append(String(decoding: o.partial[..<newline], as: UTF8.self))
          o.partial = Data(o.partial[(newline + 1)...])
        }
      }
    }
    try process.run()
  }

  public var pid: Int32 { self.process.processIdentifier }
  /// Every line printed so far.
  public var lines: [String] { self.output.state.withLock { $0.lines } }

  /// The JSON log lines.
  public func entries() -> [[String: Any]] {
    self.lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
  }

  /// The address line the server prints once it listens: `framed`, `grpc`, `admin`.
  public func addresses(timeout: TimeInterval = 60) throws -> [String: String] {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end, self.process.isRunning {
      for line in self.lines {
        if let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], json["framed"] != nil {
          return json
        }
      }
      Thread.sleep(forTimeInterval: 0.05)
    }
    throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no address line; output: \(self.lines.suffix(5))"])
  }

  /// Resident set size in MB (VmRSS from /proc).
  public func rssMB() throws -> Double {
    let status = try String(contentsOfFile: "/proc/\(self.pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { throw CocoaError(.fileReadCorruptFile) }
    return kb / 1024
  }

  public var isRunning: Bool { self.process.isRunning }

  /// The exit status once it has exited (nil while running).
  public var exitStatus: Int32? { self.process.isRunning ? nil : self.process.terminationStatus }

  /// SIGKILL (a crash: nothing is cleaned up), and waits until it is gone.
  public func sigkill() {
    guard self.process.isRunning else { return }
    kill(self.process.processIdentifier, SIGKILL)
    let end = Date().addingTimeInterval(5)
    while self.process.isRunning, Date() < end { Thread.sleep(forTimeInterval: 0.02) }
  }

  /// SIGTERM (a drain bounded by `--grace`), then SIGKILL after 5 s.
  public func stop() {
    guard self.process.isRunning else { return }
    self.process.terminate()
    let end = Date().addingTimeInterval(5)
    while self.process.isRunning, Date() < end { Thread.sleep(forTimeInterval: 0.05) }
    // Gone before this returns: a successor on the same files must not meet it.
    self.sigkill()
  }

  /// This build's `quizwire` (debug, else release), found from the package root.
  public static func quizwireExecutable(file: StaticString = #filePath) throws -> String {
    var url = URL(fileURLWithPath: "\(file)")
    while url.path != "/", !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
      url.deleteLastPathComponent()
    }
    for configuration in ["debug", "release"] {
      let candidate = url.appendingPathComponent(".build/\(configuration)/quizwire").path
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "quizwire executable not built (swift build)"])
  }
}
