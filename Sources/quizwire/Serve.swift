import ArgumentParser
import AuthService
import BenchService
import Foundation
import FramedTransport
import GRPCCore
import Logging
import ServiceKit
import ServiceLifecycle
import UnixSignals

/// Options every `serve` subcommand shares. Each may also come from `QUIZWIRE_<NAME>` in
/// the environment or from the `--config` JSON file (flags win, then environment, then file).
struct HostOptions: ParsableArguments {
  @Option(help: "JSON config file (also QUIZWIRE_CONFIG).")
  var config: String?
  @Option(help: "Address to listen on (default 127.0.0.1).")
  var host: String?
  @Option(help: "Framed-wire port (0 picks a free one).")
  var framedPort: Int?
  @Option(help: "gRPC over HTTP/2 port (0 picks a free one).")
  var grpcPort: Int?
  @Option(help: "Admin HTTP port for /metrics /livez /readyz (0 picks a free one).")
  var adminPort: Int?
  @Option(help: "Streams one client may have open on a framed connection (default 1024).")
  var maxConcurrentStreams: Int?
  @Option(help: "Seconds in-flight calls get to finish on shutdown (default 10).")
  var grace: Double?
  @Option(help: "Calls per second allowed per principal, 0 for no limit (default 500).")
  var rateLimit: Double?
  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
  var logLevel: String?
  @Flag(help: "Run without the standard interceptors (to measure what they cost).")
  var noInterceptors = false

  /// The layered host configuration, validated; errors name the key and where it came from.
  func resolve(defaults: ServiceHost.Config = ServiceHost.Config()) throws -> (ServiceHost.Config, Logger.Level, ConfigLayers) {
    let layers = try ConfigLayers(filePath: self.config)
    var c = defaults
    c.host = layers.string("host", flag: self.host, default: c.host)
    // The listeners bind an IPv4 literal; a name would only fail later, at bind time.
    let octets = c.host.split(separator: ".", omittingEmptySubsequences: false)
    guard octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) else {
      throw ConfigError(key: "host", origin: layers.raw("host", flag: self.host)?.1, reason: "\"\(c.host)\" is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)")
    }
    c.framedPort = try layers.int("framed-port", flag: self.framedPort, default: c.framedPort, in: 0...65535)
    c.grpcPort = try layers.int("grpc-port", flag: self.grpcPort, default: c.grpcPort, in: 0...65535)
    c.adminPort = try layers.int("admin-port", flag: self.adminPort, default: c.adminPort ?? 0, in: 0...65535)
    c.framed.connection.settings.maxConcurrentStreams = try layers.int(
      "max-concurrent-streams", flag: self.maxConcurrentStreams, default: c.framed.connection.settings.maxConcurrentStreams, in: 1...1_000_000)
    let grace = try layers.double("grace", flag: self.grace, default: Double(c.grace.components.seconds), in: 0...3600)
    c.grace = .milliseconds(Int64(grace * 1000))
    let rate = try layers.double("rate-limit", flag: self.rateLimit, default: c.rateLimit?.perSecond ?? 0, in: 0...10_000_000)
    c.rateLimit = rate > 0 ? RateLimit(perSecond: rate, burst: max(1, rate * 2)) : nil
    c.interceptors = try layers.bool("interceptors", flag: self.noInterceptors ? false : nil, default: c.interceptors)
    let levelText = layers.string("log-level", flag: self.logLevel, default: "info")
    guard let level = Logger.Level(rawValue: levelText.lowercased()) else {
      throw ConfigError(key: "log-level", origin: layers.raw("log-level", flag: self.logLevel)?.1, reason: "\"\(levelText)\" is not a log level")
    }
    return (c, level, layers)
  }
}

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run one service.", subcommands: [ServeBench.self, ServeAuth.self])
}

struct ServeBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Serve bench.v1.EchoService and grpc.health.v1.Health on both transports.")

  @OptionGroup var options: HostOptions

  func run() async throws {
    let host = try makeBenchHost(options)
    try await runHosts([host])
  }
}

/// The bench echo service as a host: no rate limit and long deadlines unless configured,
/// so a load run measures the stack rather than its limits.
func makeBenchHost(_ options: HostOptions) throws -> ServiceHost {
  var defaults = ServiceHost.Config()
  defaults.rateLimit = nil
  defaults.defaultDeadline = .seconds(3600)
  // The echo handler never blocks, so it can run on its connection's event loop.
  defaults.framed.runHandlersOnEventLoop = true
  let (config, level, _) = try options.resolve(defaults: defaults)
  return try ServiceHost(name: "bench.v1.EchoService", services: [EchoService()], config: config, logLevel: level)
}

/// Runs hosts under swift-service-lifecycle until SIGTERM/SIGINT has drained them, printing
/// where each listens (one JSON line each) once all are up.
func runHosts(_ hosts: [ServiceHost]) async throws {
  let logger = Logger(label: "quizwire") { JSONLogHandler(label: $0) }
  let group = ServiceGroup(configuration: .init(
    services: hosts.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
  try await withThrowingDiscardingTaskGroup { tasks in
    tasks.addTask { try await group.run() }
    for host in hosts {
      let a = try await host.addresses()
      let line = #"{"service":"\#(host.name)","framed":"\#(a.framed)","grpc":"\#(a.grpc)","admin":"\#(a.admin ?? "")"}"# + "\n"
      FileHandle.standardOutput.write(Data(line.utf8))
    }
  }
}

struct Up: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the whole suite on this machine: auth (SQLite in ./.quizwire) and the bench echo service.",
    discussion: """
      Ports: auth framed 7410, gRPC 7411, admin 7412; bench framed 7400, gRPC 7401, admin 7402.
      Use `quizwire serve <service>` to run one service with ports of your choosing.
      """)

  @OptionGroup var auth: AuthOptions
  @Option(help: "Log level (default info; also QUIZWIRE_LOG_LEVEL).")
  var logLevel: String?

  func run() async throws {
    // Fixed ports, given as flags so a QUIZWIRE_FRAMED_PORT meant for one `serve` can't make
    // both services claim the same port.
    func ports(_ p: (Int, Int, Int)) throws -> HostOptions {
      try HostOptions.parse((logLevel.map { ["--log-level", $0] } ?? []) + ["--framed-port", "\(p.0)", "--grpc-port", "\(p.1)", "--admin-port", "\(p.2)"])
    }
    let bench = try makeBenchHost(try ports((7400, 7401, 7402)))
    var (authConfig, level, layers) = try ports((7410, 7411, 7412)).resolve()
    authConfig.framed.runHandlersOnEventLoop = false  // scrypt must never run on an event loop
    let auth = try await AuthServer.make(options: try self.auth.resolve(layers), host: authConfig, logLevel: level)
    FileHandle.standardError.write(Data("quizwire up: serving auth and bench; Ctrl-C drains and exits\n".utf8))
    do {
      try await runHosts([auth.host, bench])
    } catch {
      try? await auth.database.shutdown()
      throw error
    }
    try await auth.database.shutdown()
  }
}
