import Foundation

/// The peers whose `x-forwarded-for` names the real client: the gateway's addresses. Only an
/// anonymous call from one of them is rate-limited by the forwarded address; from anywhere else
/// the header is ignored (anyone could send it), so every caller still has a bucket it can't
/// choose. Entries are IPv4 addresses, IPv4 networks (`10.0.0.0/8`) or IPv6 addresses.
public struct TrustedProxies: Sendable {
  private var networks: [(base: UInt32, mask: UInt32)] = []
  private var ipv6: Set<String> = []

  public static let none = TrustedProxies()
  private init() {}

  /// Parses a comma-separated list; throws naming the first entry that is none of the above.
  public init(_ text: String) throws(ConfigError) {
    for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
      if entry.contains(":") {
        self.ipv6.insert(entry.lowercased())
        continue
      }
      let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
      guard parts.count <= 2, let base = Self.ipv4(String(parts[0])) else {
        throw ConfigError(key: "trusted-proxies", origin: nil, reason: "\"\(entry)\" is not an IP address or IPv4 network")
      }
      var bits = 32
      if parts.count == 2 {
        guard let prefix = Int(parts[1]), (0...32).contains(prefix) else {
          throw ConfigError(key: "trusted-proxies", origin: nil, reason: "\"\(entry)\": the prefix must be 0…32")
        }
        bits = prefix
      }
      let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
      self.networks.append((base & mask, mask))
    }
  }

  public var isEmpty: Bool { self.networks.isEmpty && self.ipv6.isEmpty }

  /// Whether `host` (an address as it appears in a peer description) is trusted.
  public func contains(host: String) -> Bool {
    if let address = Self.ipv4(host) { return self.networks.contains { address & $0.mask == $0.base } }
    return self.ipv6.contains(host.trimmingCharacters(in: ["[", "]"]).lowercased())
  }

  static func ipv4(_ text: String) -> UInt32? {
    let octets = text.split(separator: ".", omittingEmptySubsequences: false)
    guard octets.count == 4 else { return nil }
    var value: UInt32 = 0
    for octet in octets {
      guard octet.count <= 3, let byte = UInt8(octet) else { return nil }
      value = value << 8 | UInt32(byte)
    }
    return value
  }
}
