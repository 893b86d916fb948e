import BenchService
import Foundation
import FramedTransport
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2

/// `quizwire bench`: the same service and client code over four stacks, side by side, in one
/// process on 127.0.0.1 — raw NIO echo (the machine's ceiling), GRPCCore in-process (the RPC
/// layer's ceiling), our framed wire, and grpc-swift-nio-transport HTTP/2.
public struct Benchmark: Sendable {
  public static let scenarioNames = ["unary_c1_64b", "unary_c64_64b", "unary_c64_4k", "bidi_c64_64b", "server_stream_1m_64b", "streams_10k_idle"]
  public static let columns = ["raw", "inproc", "framed", "h2"]

  /// One cell: throughput (ops/s, or MB for the RSS scenario) and p99 latency.
  public struct Cell: Sendable {
    public var value: Double
    public var p99: UInt64
  }

  public var quick: Bool
  /// Path of the quizwire executable, for the RSS scenario's server process.
  public var executable: String
  public var log: @Sendable (String) -> Void

  public init(quick: Bool, executable: String, log: @escaping @Sendable (String) -> Void) {
    self.quick = quick
    self.executable = executable
    self.log = log
  }

  var runDuration: Duration { self.quick ? .milliseconds(700) : .seconds(5) }
  var runs: Int { 3 }

  /// Runs the scenarios; returns scenario → column → cell.
  public func run(scenarios: [String]) async throws -> [String: [String: Cell]] {
    let framedServer = try FramedServerTransport(
      config: {
        var c = FramedServerTransport.Config()
        c.connection.settings.maxConcurrentStreams = 20_000
        c.runHandlersOnEventLoop = true  // as `quizwire serve bench` runs the echo service
        return c
      }())
    let h2Server = HTTP2ServerTransport.Posix(
      address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext,
      config: .defaults { $0.http2.maxConcurrentStreams = 20_000 })
    let inproc = InProcessTransport()
    let framed = GRPCServer(transport: framedServer, services: [EchoService()])
    let h2 = GRPCServer(transport: h2Server, services: [EchoService()])
    let inprocServer = GRPCServer(transport: inproc.server, services: [EchoService()])
    let raw = try await RawEcho.startServer()
    return try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await framed.serve() }
      group.addTask { try await h2.serve() }
      group.addTask { try await inprocServer.serve() }
      let framedPort = try await framedServer.listeningAddress.port!
      let h2Port = try await h2Server.listeningAddress.ipv4!.port
      var results: [String: [String: Cell]] = [:]
      let framedClient = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(host: "127.0.0.1", port: framedPort)])))
      let h2Client = GRPCClient(transport: try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: h2Port), transportSecurity: .plaintext))
      let inprocClient = GRPCClient(transport: inproc.client)
      group.addTask { try await framedClient.runConnections() }
      group.addTask { try await h2Client.runConnections() }
      group.addTask { try await inprocClient.runConnections() }

      for name in scenarios {
        var row: [String: Cell] = [:]
        if name == "streams_10k_idle" {
          row = try await self.idleStreams(inproc: inprocClient)
        } else {
          let spec = try Self.spec(name, quick: self.quick)
          for column in Self.columns {
            var cells: [Cell] = []
            for _ in 0..<self.runs {
              switch column {
              case "raw": cells.append(try await self.raw(spec, port: raw.localAddress!.port!))
              case "inproc": cells.append(await self.grpc(spec, client: inprocClient, name: column))
              case "framed": cells.append(await self.grpc(spec, client: framedClient, name: column))
              default: cells.append(await self.grpc(spec, client: h2Client, name: column))
              }
            }
            row[column] = Self.median(cells)
            self.log("  \(name) \(column): \(Int(row[column]!.value)) ops/s, p99 \(row[column]!.p99) µs")
          }
        }
        results[name] = row
      }
      framedClient.beginGracefulShutdown()
      h2Client.beginGracefulShutdown()
      inprocClient.beginGracefulShutdown()
      framed.beginGracefulShutdown()
      h2.beginGracefulShutdown()
      inprocServer.beginGracefulShutdown()
      try await raw.close()
      return results
    }
  }

  struct Spec {
    var method: LoadMethod
    var concurrency: Int
    var payload: Int
    var messagesPerStream: Int
  }

  static func spec(_ name: String, quick: Bool) throws -> Spec {
    switch name {
    case "unary_c1_64b": return Spec(method: .unary, concurrency: 1, payload: 64, messagesPerStream: 1)
    case "unary_c64_64b": return Spec(method: .unary, concurrency: 64, payload: 64, messagesPerStream: 1)
    case "unary_c64_4k": return Spec(method: .unary, concurrency: 64, payload: 4096, messagesPerStream: 1)
    case "bidi_c64_64b": return Spec(method: .bidi, concurrency: 64, payload: 64, messagesPerStream: 1_000_000)
    case "server_stream_1m_64b": return Spec(method: .serverStream, concurrency: 1, payload: 64, messagesPerStream: quick ? 100_000 : 1_000_000)
    default: throw BenchmarkError.unknownScenario(name)
    }
  }

  func raw(_ spec: Spec, port: Int) async throws -> Cell {
    let stream = spec.method == .serverStream ? spec.messagesPerStream : nil
    let (ops, latency) = try await RawEcho.run(
      port: port, payload: spec.payload, outstanding: spec.concurrency, duration: stream == nil ? self.runDuration : .seconds(60), streamCount: stream)
    return Cell(value: ops, p99: latency.percentile(99))
  }

  func grpc<T: ClientTransport>(_ spec: Spec, client: GRPCClient<T>, name: String) async -> Cell {
    var options = LoadOptions()
    options.method = spec.method
    options.concurrency = spec.concurrency
    options.payloadSize = spec.payload
    options.messagesPerStream = spec.messagesPerStream
    if spec.method == .serverStream {
      options.duration = nil
      options.requests = 1
    } else {
      options.duration = self.runDuration
    }
    let report = await LoadGenerator(options: options).run(client: client, transportName: name)
    if !report.errors.isEmpty { self.log("  \(name): errors \(report.errors)") }
    let value: Double
    switch spec.method {
    case .unary: value = report.calls_per_s
    case .bidi, .serverStream: value = report.messages_per_s / (spec.method == .bidi ? 2 : 1)
    case .clientStream: value = report.messages_per_s
    }
    return Cell(value: value, p99: report.latency.p99_us)
  }

  static func median(_ cells: [Cell]) -> Cell {
    let sorted = cells.sorted { $0.value < $1.value }
    let p99s = cells.map(\.p99).sorted()
    return Cell(value: sorted[sorted.count / 2].value, p99: p99s[p99s.count / 2])
  }

  public enum BenchmarkError: Error, CustomStringConvertible {
    case unknownScenario(String)
    case serverFailed(String)
    public var description: String {
      switch self {
      case .unknownScenario(let n): return "unknown scenario \(n); known: \(Benchmark.scenarioNames.joined(separator: ", "))"
      case .serverFailed(let why): return "benchmark server failed: \(why)"
      }
    }
  }
}
