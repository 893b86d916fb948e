import ArgumentParser
import Foundation
import Gateway
import Logging
import ServiceKit
import ServiceLifecycle
import UnixSignals

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run one service.",
    discussion: """
      Services: \(Registry.modules.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")); \(GatewayCommand.name) (\(GatewayCommand.summary)).
      Settings are --key value; each may also be QUIZWIRE_<KEY> in the environment or a key in the
      --config JSON file (flags win, then environment, then file). `quizwire serve <service> --help`
      lists a service's settings.
      """)

  @Argument(help: "The service to run.")
  var service: String
  @Argument(parsing: .captureForPassthrough, help: "Its settings: --key value …")
  var settings: [String] = []

  func run() async throws {
    if service == GatewayCommand.name {
      try await GatewayCommand.serve(settings)
      return
    }
    guard let module = Registry.module(named: service) else {
      throw ValidationError("unknown service \(service); known: \((Registry.names + [GatewayCommand.name]).joined(separator: ", "))")
    }
    let keys = ServiceAssembly.keys(of: module)
    if SettingsParser.wantsHelp(settings) {
      print("quizwire serve \(module.name): \(module.summary)\n\nSettings:\n\(SettingsParser.help(keys))")
      return
    }
    let flags = try SettingsParser.parse(settings, keys: keys)
    let layers = try ConfigLayers(filePath: flags["config"], flags: flags)
    let host = try await ServiceAssembly.host(module, layers: layers)
    try await runHosts([host])
  }
}

/// Runs hosts (and the gateway, last, so it drains first) under swift-service-lifecycle until
/// SIGTERM/SIGINT has drained them, printing where each listens (one JSON line each) once all
/// are up. A host that cannot start has logged why; the process exits 1.
func runHosts(_ hosts: [ServiceHost], gateway: GatewayHost? = nil) async throws {
  let logger = Logger(label: "quizwire") { JSONLogHandler(label: $0, level: .critical) }
  let group = ServiceGroup(
    configuration: .init(
      services: hosts.map { .init(service: $0) } + (gateway.map { [.init(service: $0)] } ?? []),
      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
  do {
    try await withThrowingDiscardingTaskGroup { tasks in
      tasks.addTask { try await group.run() }
      for host in hosts {
        let a = try await host.addresses()
        let line = #"{"service":"\#(host.name)","framed":"\#(a.framed)","grpc":"\#(a.grpc)","admin":"\#(a.admin ?? "")"}"# + "\n"
        FileHandle.standardOutput.write(Data(line.utf8))
      }
      if let gateway {
        let a = try await gateway.addresses()
        let line = #"{"service":"gateway","http":"\#(a.http)","url":"http://\#(a.http)/api/v1","admin":"\#(a.admin)"}"# + "\n"
        FileHandle.standardOutput.write(Data(line.utf8))
      }
    }
  } catch is HostStartError {
    throw ExitCode(1)
  } catch is GatewayStartError {
    throw ExitCode(1)
  }
}
