import BenchService
import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import QuizwireProtos

extension Benchmark {
  static let idleStreamCount = 10_000

  /// `streams_10k_idle`: resident memory (MB) of a `quizwire serve bench` process holding
  /// 10,000 open bidi streams on one connection. `raw` is that process idle (the baseline);
  /// `inproc` is this process's growth for the same streams over the in-process transport.
  func idleStreams<T: ClientTransport>(inproc: GRPCClient<T>) async throws -> [String: Cell] {
    var row: [String: Cell] = [:]
    for column in ["framed", "h2"] {
      let server = try ServerProcess(executable: self.executable)
      defer { server.stop() }
      if row["raw"] == nil { row["raw"] = Cell(value: server.rssMB(), p99: 0) }
      let mb: Double
      if column == "framed" {
        let client = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(host: "127.0.0.1", port: server.framedPort)])))
        mb = try await Self.holdStreams(client: client) { server.rssMB() }
      } else {
        let client = GRPCClient(
          transport: try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: server.grpcPort), transportSecurity: .plaintext))
        mb = try await Self.holdStreams(client: client) { server.rssMB() }
      }
      row[column] = Cell(value: mb, p99: 0)
      self.log("  streams_10k_idle \(column): \(mb) MB server RSS (idle server \(row["raw"]!.value) MB)")
    }
    let before = ServerProcess.rssMB(pid: getpid())
    let after = try await Self.holdStreams(client: inproc, running: true) { ServerProcess.rssMB(pid: getpid()) }
    row["inproc"] = Cell(value: ((after - before) * 10).rounded() / 10, p99: 0)
    return row
  }

  /// Opens `idleStreamCount` bidi streams (one echo each, so each is really open on the server),
  /// measures while all are held open, then closes them.
  static func holdStreams<T: ClientTransport>(client: GRPCClient<T>, running: Bool = false, measure: @Sendable () -> Double) async throws -> Double {
    try await withThrowingTaskGroup(of: Void.self) { outer in
      if !running { outer.addTask { try await client.runConnections() } }
      let echo = Bench_V1_EchoService.Client(wrapping: client)
      let opened = SharedCounter(0)
      let release = SharedCounter(0)
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<idleStreamCount {
          group.addTask {
            let (requests, continuation) = AsyncStream.makeStream(of: Bench_V1_EchoRequest.self)
            var options = CallOptions.defaults
            options.waitForReady = true
            try await echo.bidi(request: StreamingClientRequest { w in for await r in requests { try await w.write(r) } }, options: options) { response in
              var it = response.messages.makeAsyncIterator()
              continuation.yield(Bench_V1_EchoRequest.with { $0.payload = Data(repeating: 1, count: 64) })
              _ = try await it.next()
              _ = opened.add(1)
              while release.add(0) == 0 { try await Task.sleep(for: .milliseconds(20)) }
              continuation.finish()
              while try await it.next() != nil {}
            }
          }
        }
        while opened.add(0) < idleStreamCount { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(200))
        let mb = measure()
        _ = release.add(1)
        try await group.waitForAll()
        opened.value.store(Int(mb * 10), ordering: .relaxed)
      }
      if !running { client.beginGracefulShutdown() }
      try await outer.waitForAll()
      return Double(opened.add(0)) / 10
    }
  }
}

/// A `quizwire serve bench` child process, for measuring a server on its own.
final class ServerProcess: Sendable {
  let process: Process
  let framedPort: Int
  let grpcPort: Int

  init(executable: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    // The transports' own cost per stream, like every other scenario here (they run without
    // interceptors too); docs/performance.md has the full-stack figure beside it.
    p.arguments =
      [
        "serve", "bench", "--framed-port", "0", "--grpc-port", "0", "--admin-port", "0",
        "--max-concurrent-streams", "20000", "--log-level", "warning",
      ]
      + (ProcessInfo.processInfo.environment["QUIZWIRE_BENCH_INTERCEPTORS"] == "1" ? [] : ["--no-interceptors"])
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    // Log lines and the address line share stdout: the address line names "framed".
    var address: (framed: FramedTarget, grpc: FramedTarget)?
    var lines = 0
    while address == nil, lines < 50 {
      var line = Data()
      while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) { line += byte }
      if line.isEmpty { break }
      lines += 1
      if let json = try? JSONSerialization.jsonObject(with: line) as? [String: String],
        let framed = json["framed"].flatMap({ FramedTarget($0) }), let grpc = json["grpc"].flatMap({ FramedTarget($0) })
      {
        address = (framed, grpc)
      }
    }
    guard let (framed, grpc) = address else {
      p.terminate()
      throw Benchmark.BenchmarkError.serverFailed("no address line from quizwire serve bench")
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    out.fileHandleForReading.readabilityHandler = { handle in _ = handle.availableData }
    self.process = p
    self.framedPort = framed.port
    self.grpcPort = grpc.port
  }

  func rssMB() -> Double { Self.rssMB(pid: self.process.processIdentifier) }

  static func rssMB(pid: Int32) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return (kb / 1024 * 10).rounded() / 10
  }

  func stop() {
    self.process.terminate()
    defer { (self.process.standardOutput as? Pipe)?.fileHandleForReading.readabilityHandler = nil }
    self.process.waitUntilExit()
  }
}
