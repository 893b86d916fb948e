import ArgumentParser
import Foundation
import Gateway
import ServiceKit

struct Up: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the whole suite on this machine (SQLite in ./.quizwire, zero setup).",
    discussion: """
      Ports (framed/gRPC/admin): \(Registry.modules.map { "\($0.name) \($0.defaultPorts.framed)/\($0.defaultPorts.grpc)/\($0.defaultPorts.admin)" }.joined(separator: ", ")); gateway HTTP \(GatewaySettings.defaultHTTPPort), admin \(GatewaySettings.defaultAdminPort) (with auth, quiz and scoring).
      Services that depend on auth are registered with it as internal OAuth clients; their
      secrets are kept in <data-dir>/<name>-client.secret (0600).
      Use `quizwire serve <service>` to run one service with settings of your choosing.
      """)

  @Option(help: "Run only these services (comma-separated, e.g. auth,bench).")
  var only: String?
  @Option(help: "Folder for SQLite files and local secrets (default ./.quizwire).")
  var dataDir: String?
  @Option(help: "Comma-separated emails that become admins when they register.")
  var adminEmails: String?
  @Option(help: "Log level (default info; also QUIZWIRE_LOG_LEVEL).")
  var logLevel: String?
  @Option(help: "Add this to every port above, to run a second suite beside the first (default 0).")
  var portOffset = 0

  func validate() throws {
    guard (0...50_000).contains(portOffset) else { throw ValidationError("--port-offset must be 0…50000") }
  }

  func run() async throws {
    var modules = Registry.modules
    var withGateway = true
    if let only {
      let names = only.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      for name in names where Registry.module(named: name) == nil && name != GatewayCommand.name {
        throw ValidationError("--only: unknown service \(name); known: \((Registry.names + [GatewayCommand.name]).joined(separator: ", "))")
      }
      modules = modules.filter { names.contains($0.name) }
      withGateway = names.contains(GatewayCommand.name)
    }
    let running = Set(modules.map { $0.name })
    for dependency in GatewaySettings.upstreamNames where withGateway && !running.contains(dependency) {
      throw ValidationError("gateway needs \(dependency): add it to --only")
    }
    for module in modules {
      for dependency in module.dependsOn where !running.contains(dependency) {
        throw ValidationError("\(module.name) needs \(dependency): add it to --only")
      }
    }
    let environment = ProcessInfo.processInfo.environment
    let dataDir = self.dataDir ?? environment[ConfigLayers.environmentName("data-dir")] ?? "./.quizwire"
    let internalClients = modules.filter { $0.dependsOn.contains("auth") }.map { $0.name }
    var hosts: [ServiceHost] = []
    for module in modules {
      // Fixed ports as flags, so a QUIZWIRE_FRAMED_PORT meant for one `serve` can't make two
      // services claim the same port.
      var flags = [
        "framed-port": "\(module.defaultPorts.framed + portOffset)", "grpc-port": "\(module.defaultPorts.grpc + portOffset)",
        "admin-port": "\(module.defaultPorts.admin + portOffset)",
      ]
      if let logLevel { flags["log-level"] = logLevel }
      if !module.migrations.isEmpty { flags["data-dir"] = dataDir }
      // The gateway calls from 127.0.0.1 and forwards each browser's address: anonymous
      // browsers get a rate-limit bucket each instead of sharing the gateway's.
      if withGateway { flags["trusted-proxies"] = "127.0.0.1" }
      var env = environment
      for dependency in module.dependsOn {
        guard let target = Registry.module(named: dependency) else { continue }
        flags["\(dependency)-target"] = "127.0.0.1:\(target.defaultPorts.framed + portOffset)"
      }
      if module.dependsOn.contains("auth") {
        let path = LocalSecretFile.clientSecretPath(dataDir: dataDir, service: module.name)
        _ = try LocalSecretFile.readOrCreate(path: path, key: "client-secret")
        env["QUIZWIRE_CLIENT_SECRET"] = nil
        env["QUIZWIRE_CLIENT_SECRET_FILE"] = path
      }
      // What `up` hands out goes to whichever module reads it (today: auth).
      let reads = Set(ServiceAssembly.keys(of: module).map(\.name))
      if reads.contains("internal-clients"), !internalClients.isEmpty { flags["internal-clients"] = internalClients.joined(separator: ",") }
      if reads.contains("admin-emails"), let adminEmails { flags["admin-emails"] = adminEmails }
      // Optional targets (not dependencies): a module that can follow another, e.g. quiz's
      // --scoring-target (play counts), gets its address when that one runs too.
      for other in modules where other.name != module.name && !module.dependsOn.contains(other.name) {
        if reads.contains("\(other.name)-target") { flags["\(other.name)-target"] = "127.0.0.1:\(other.defaultPorts.framed + portOffset)" }
      }
      hosts.append(try await ServiceAssembly.host(module, layers: try ConfigLayers(environment: env, flags: flags)))
    }
    let gateway = withGateway ? try GatewayCommand.forUp(logLevel: logLevel, dataDir: dataDir, portOffset: portOffset) : nil
    let names = modules.map { $0.name } + (withGateway ? [GatewayCommand.name] : [])
    FileHandle.standardError.write(Data("quizwire up: serving \(names.joined(separator: ", ")); Ctrl-C drains and exits\n".utf8))
    if withGateway {
      FileHandle.standardError.write(Data("quizwire up: the API is at http://127.0.0.1:\(GatewaySettings.defaultHTTPPort + portOffset)/api/v1\n".utf8))
    }
    try await runHosts(hosts, gateway: gateway)
  }
}
