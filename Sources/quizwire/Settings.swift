import ArgumentParser
import ServiceKit

/// `--key value`, `--key=value`, `--toggle`/`--no-toggle` against the keys a command reads:
/// an unknown key is refused (not ignored), a secret never comes from the command line.
enum SettingsParser {
  static func parse(_ arguments: [String], keys: [ConfigKey]) throws -> [String: String] {
    var values: [String: String] = [:]
    var i = 0
    while i < arguments.count {
      let argument = arguments[i]
      i += 1
      guard argument.hasPrefix("--"), argument.count > 2 else {
        throw ValidationError("unexpected argument \"\(argument)\"; settings are --key value (see --help)")
      }
      var name = String(argument.dropFirst(2))
      var inline: String?
      if let eq = name.firstIndex(of: "=") {
        inline = String(name[name.index(after: eq)...])
        name = String(name[..<eq])
      }
      var negated = false
      if keys.first(where: { $0.name == name }) == nil, name.hasPrefix("no-") {
        negated = true
        name = String(name.dropFirst(3))
      }
      guard let key = keys.first(where: { $0.name == name }) else {
        throw ValidationError("unknown setting --\(name); known: \(keys.filter { $0.kind != .secret }.map { "--" + $0.name }.joined(separator: ", "))")
      }
      guard values[name] == nil else { throw ValidationError("--\(name) given twice") }
      switch key.kind {
      case .secret:
        throw ValidationError("--\(name) is a secret: set \(ConfigLayers.environmentName(name)) or \(ConfigLayers.environmentName(name))_FILE instead")
      case .toggle:
        guard inline == nil else { throw ValidationError("--\(name) takes no value (use --no-\(name) to turn it off)") }
        values[name] = negated ? "false" : "true"
      case .value:
        guard !negated else { throw ValidationError("unknown setting --no-\(name)") }
        if let inline {
          values[name] = inline
        } else {
          guard i < arguments.count, !arguments[i].hasPrefix("--") else { throw ValidationError("--\(name) needs a value") }
          values[name] = arguments[i]
          i += 1
        }
      }
    }
    return values
  }

  /// The keys as `--help` shows them.
  static func help(_ keys: [ConfigKey]) -> String {
    keys.map { key in
      switch key.kind {
      case .value: "  --\(key.name) <value>\n      \(key.help)"
      case .toggle: "  --[no-]\(key.name)\n      \(key.help)"
      case .secret: "  \(ConfigLayers.environmentName(key.name))[_FILE] (environment only)\n      \(key.help)"
      }
    }.joined(separator: "\n")
  }

  static func wantsHelp(_ arguments: [String]) -> Bool { arguments.contains("--help") || arguments.contains("-h") }
}
