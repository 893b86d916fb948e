import NIOCore

/// Message encodings a peer accepts, as the ACCEPT_ENCODINGS bitmask.
public struct EncodingSet: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public static let identity = EncodingSet(rawValue: 1)
  public static let deflate = EncodingSet(rawValue: 2)
  public static let gzip = EncodingSet(rawValue: 4)
  public static let all: EncodingSet = [.identity, .deflate, .gzip]
}

/// A connection's SETTINGS: what the sender accepts from its peer. Sent once per direction.
public struct ConnectionSettings: Hashable, Sendable {
  /// Setting identifiers on the wire.
  public enum ID: UInt16, Sendable, CaseIterable {
    case maxFrameSize = 0x1
    case initialStreamWindow = 0x2
    case initialConnectionWindow = 0x3
    case maxConcurrentStreams = 0x4
    case maxHeaderListSize = 0x5
    case maxMessageSize = 0x6
    case acceptEncodings = 0x7
  }

  /// Largest frame payload the sender accepts. Default 64 KiB.
  public var maxFrameSize: Int = 65_536
  /// Initial receive window of every stream. Default 256 KiB.
  public var initialStreamWindow: Int = 262_144
  /// Initial receive window of the connection. Default 4 MiB.
  public var initialConnectionWindow: Int = 4_194_304
  /// Streams the sender accepts from its peer at once. Default 1024.
  public var maxConcurrentStreams: Int = 1024
  /// Largest HEADERS/TRAILERS payload the sender accepts. Default 16 KiB.
  public var maxHeaderListSize: Int = 16_384
  /// Largest (uncompressed) message the sender accepts. Default 4 MiB.
  public var maxMessageSize: Int = 4_194_304
  /// Message encodings the sender can decode.
  public var acceptEncodings: EncodingSet = .all

  public init() {}

  /// The defaults every setting has until the peer's SETTINGS say otherwise.
  public static let defaults = ConnectionSettings()

  /// Applies one received (id, value) pair. Unknown ids are ignored; a value out of range is a
  /// connection PROTOCOL_ERROR.
  public mutating func apply(id rawID: UInt16, value: UInt32) throws(ConnectionError) {
    guard let id = ID(rawValue: rawID) else { return }
    let v = Int(value)
    func bad(_ range: String) -> ConnectionError {
      ConnectionError(.protocolError, "SETTINGS \(id) value \(value) out of range \(range)")
    }
    switch id {
    case .maxFrameSize:
      guard (WireLimits.minFrameSize...WireLimits.maxFrameSizeCap).contains(v) else { throw bad("16384...16777215") }
      self.maxFrameSize = v
    case .initialStreamWindow:
      guard (65_536...WireLimits.maxWindow).contains(v) else { throw bad("65536...2147483647") }
      self.initialStreamWindow = v
    case .initialConnectionWindow:
      guard (65_536...WireLimits.maxWindow).contains(v) else { throw bad("65536...2147483647") }
      self.initialConnectionWindow = v
    case .maxConcurrentStreams:
      guard v <= Int(WireLimits.maxStreamID) else { throw bad("0...2147483647") }
      self.maxConcurrentStreams = v
    case .maxHeaderListSize:
      guard (1024...WireLimits.maxFrameSizeCap).contains(v) else { throw bad("1024...16777215") }
      self.maxHeaderListSize = v
    case .maxMessageSize:
      guard v >= 1024 else { throw bad(">= 1024") }
      self.maxMessageSize = v
    case .acceptEncodings:
      guard value & 1 == 1 else { throw bad("with the identity bit set") }
      self.acceptEncodings = EncodingSet(rawValue: value & EncodingSet.all.rawValue)
    }
  }

  /// Every setting, in ascending id order: what this implementation sends, so a peer never
  /// depends on our defaults matching its own.
  public var allEntries: [(UInt16, UInt32)] {
    [
      (ID.maxFrameSize.rawValue, UInt32(maxFrameSize)),
      (ID.initialStreamWindow.rawValue, UInt32(initialStreamWindow)),
      (ID.initialConnectionWindow.rawValue, UInt32(initialConnectionWindow)),
      (ID.maxConcurrentStreams.rawValue, UInt32(maxConcurrentStreams)),
      (ID.maxHeaderListSize.rawValue, UInt32(maxHeaderListSize)),
      (ID.maxMessageSize.rawValue, UInt32(maxMessageSize)),
      (ID.acceptEncodings.rawValue, acceptEncodings.rawValue),
    ]
  }

  /// Builds settings from received pairs, starting from the defaults.
  public static func decode(_ entries: [SettingsEntry]) throws(ConnectionError) -> ConnectionSettings {
    var s = ConnectionSettings()
    for e in entries { try s.apply(id: e.id, value: e.value) }
    return s
  }
}

/// One (id, value) pair of a SETTINGS frame, as received.
public struct SettingsEntry: Hashable, Sendable {
  public var id: UInt16
  public var value: UInt32
  public init(id: UInt16, value: UInt32) {
    self.id = id
    self.value = value
  }
}

/// A problem that ends the whole connection: answered with GOAWAY(code, reason) and close.
public struct ConnectionError: Error, Hashable, Sendable, CustomStringConvertible {
  public var code: WireErrorCode
  public var reason: String
  public init(_ code: WireErrorCode, _ reason: String) {
    self.code = code
    self.reason = reason
  }
  public var description: String { "\(code): \(reason)" }
}

/// A problem confined to one stream: answered with RST(code) on that stream.
public struct StreamError: Error, Hashable, Sendable, CustomStringConvertible {
  public var streamID: UInt32
  public var code: WireErrorCode
  public var reason: String
  public init(_ streamID: UInt32, _ code: WireErrorCode, _ reason: String) {
    self.streamID = streamID
    self.code = code
    self.reason = reason
  }
  public var description: String { "stream \(streamID) \(code): \(reason)" }
}
