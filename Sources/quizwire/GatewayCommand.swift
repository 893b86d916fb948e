import ArgumentParser
import Foundation
import Gateway
import ServiceKit

/// `quizwire serve gateway`: the HTTP/JSON gateway. Not a service module (it serves HTTP, not
/// RPC), so it is run by name here; its settings and host live in the Gateway module.
enum GatewayCommand {
  static let name = "gateway"
  static let summary = "the HTTP/JSON API in front of auth, quiz and scoring"

  static func serve(_ arguments: [String]) async throws {
    if SettingsParser.wantsHelp(arguments) {
      print("quizwire serve \(name): \(summary)\n\nSettings:\n\(SettingsParser.help(GatewaySettings.keys))")
      return
    }
    let flags = try SettingsParser.parse(arguments, keys: GatewaySettings.keys)
    let layers = try ConfigLayers(filePath: flags["config"], flags: flags)
    let host = try GatewayHost(settings: try GatewaySettings(layers: layers))
    try await runHosts([], gateway: host)
  }

  /// The gateway `quizwire up` runs: default ports, every upstream on its `up` port, its own
  /// database (`gateway.sqlite`) in the suite's data folder.
  static func forUp(logLevel: String?, dataDir: String, portOffset: Int = 0) throws -> GatewayHost {
    var flags = [
      "http-port": "\(GatewaySettings.defaultHTTPPort + portOffset)", "admin-port": "\(GatewaySettings.defaultAdminPort + portOffset)", "data-dir": dataDir,
    ]
    for name in GatewaySettings.upstreamNames {
      guard let module = Registry.module(named: name) else { continue }
      flags["\(name)-target"] = "127.0.0.1:\(module.defaultPorts.framed + portOffset)"
    }
    if let logLevel { flags["log-level"] = logLevel }
    // Play tickets are sealed with a key kept in the data folder (made on first use), so they
    // survive a restart and every gateway on this folder shares it; one set by the
    // environment wins.
    var environment = ProcessInfo.processInfo.environment
    let secretName = ConfigLayers.environmentName("ticket-secret")
    if environment[secretName] == nil && environment[secretName + "_FILE"] == nil {
      let path = URL(fileURLWithPath: dataDir).appendingPathComponent("gateway-ticket.secret").path
      _ = try LocalSecretFile.readOrCreate(path: path, key: "ticket-secret")
      environment[secretName + "_FILE"] = path
    }
    return try GatewayHost(settings: try GatewaySettings(layers: ConfigLayers(environment: environment, flags: flags)))
  }
}
