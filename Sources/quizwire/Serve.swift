import ArgumentParser
import BenchService
import Dispatch
import FramedTransport
import Foundation
import GRPCCore
import ServiceKit

/// Options every `serve` subcommand shares.
struct ListenOptions: ParsableArguments {
  @Option(help: "Address to listen on.")
  var host = "127.0.0.1"
  @Option(help: "Framed-wire port (0 picks a free one).")
  var framedPort = 0
  @Option(help: "gRPC over HTTP/2 port (0 picks a free one).")
  var grpcPort = 0
  @Option(help: "Streams one client may have open on a framed connection.")
  var maxConcurrentStreams = 1024
  @Option(help: "Seconds in-flight calls get to finish on shutdown.")
  var grace = 10.0

  func hostConfig() throws -> ServiceHost.Config {
    guard (0...65535).contains(framedPort), (0...65535).contains(grpcPort) else {
      throw ValidationError("ports must be in 0...65535")
    }
    guard maxConcurrentStreams >= 1, grace >= 0 else {
      throw ValidationError("--max-concurrent-streams must be ≥ 1 and --grace ≥ 0")
    }
    var config = ServiceHost.Config()
    config.host = host
    config.framedPort = framedPort
    config.grpcPort = grpcPort
    config.framed.connection.settings.maxConcurrentStreams = maxConcurrentStreams
    config.framed.connection.drainGrace = .milliseconds(Int64(grace * 1000))
    return config
  }
}

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run one service.", subcommands: [ServeBench.self])
}

struct ServeBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Serve bench.v1.EchoService and grpc.health.v1.Health on both transports.")

  @OptionGroup var listen: ListenOptions

  func run() async throws {
    var config = try listen.hostConfig()
    // The echo handler never blocks, so it can run on its connection's event loop.
    config.framed.runHandlersOnEventLoop = true
    let host = try ServiceHost(name: "bench.v1.EchoService", services: [EchoService()], config: config)
    try await runHosts([host])
  }
}

/// Runs hosts until SIGINT/SIGTERM, printing where each listens (one JSON line each).
func runHosts(_ hosts: [ServiceHost]) async throws {
  let signals = SignalWatcher { for host in hosts { host.beginGracefulShutdown() } }
  defer { signals.cancel() }
  try await withThrowingDiscardingTaskGroup { group in
    for host in hosts {
      group.addTask { try await host.run() }
    }
    for host in hosts {
      let a = try await host.addresses()
      let line = #"{"service":"\#(host.name)","framed":"\#(a.framed)","grpc":"\#(a.grpc)"}"# + "\n"
      FileHandle.standardOutput.write(line.data(using: .utf8)!)
    }
  }
}

/// SIGINT / SIGTERM start a graceful drain instead of killing the process.
final class SignalWatcher {
  private let sources: [any DispatchSourceSignal]

  init(onSignal: @escaping @Sendable () -> Void) {
    self.sources = [SIGINT, SIGTERM].map { sig in
      signal(sig, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
      source.setEventHandler {
        FileHandle.standardError.write("quizwire: signal \(sig), draining\n".data(using: .utf8)!)
        onSignal()
      }
      source.resume()
      return source
    }
  }

  func cancel() { for s in self.sources { s.cancel() } }
}

struct Up: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the whole suite on this machine (for now: the bench echo service on both transports).")

  @OptionGroup var listen: ListenOptions

  func run() async throws {
    var config = try listen.hostConfig()
    if listen.framedPort == 0 && listen.grpcPort == 0 {
      // Stable default ports so a newcomer can call it without reading the output.
      config.framedPort = 7400
      config.grpcPort = 7401
    }
    config.framed.runHandlersOnEventLoop = true
    let bench = try ServiceHost(name: "bench.v1.EchoService", services: [EchoService()], config: config)
    FileHandle.standardError.write("quizwire up: serving; Ctrl-C drains and exits\n".data(using: .utf8)!)
    try await runHosts([bench])
  }
}
