import NIOCore

/// The 8-byte connection preface each side sends first: `0x89 "QWIRE"` and a u16 version.
///
/// The non-ASCII first byte cannot be mistaken for HTTP/1, HTTP/2 ("PRI"), TLS (0x16) or a
/// PROXY header, so a misdirected client fails fast with a clear error.
public enum Preface {
  /// The six magic bytes before the version.
  public static let magic: [UInt8] = [0x89, 0x51, 0x57, 0x49, 0x52, 0x45]
  /// Total preface length in bytes.
  public static let length = 8
  /// The only protocol version this implementation speaks.
  public static let currentVersion: UInt16 = 1

  /// Writes the preface for `version` into `buffer`.
  public static func write(version: UInt16 = currentVersion, into buffer: inout ByteBuffer) {
    buffer.writeBytes(magic)
    buffer.writeInteger(version)
  }
}

/// Frame types (docs/protocol.md §3). 0x80–0xFF are extension frames, ignored when unknown.
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
  public var description: String {
    switch self {
    case .settings: return "SETTINGS"
    case .headers: return "HEADERS"
    case .message: return "MESSAGE"
    case .trailers: return "TRAILERS"
    case .rst: return "RST"
    case .windowUpdate: return "WINDOW_UPDATE"
    case .ping: return "PING"
    case .goAway: return "GOAWAY"
    }
  }

  case settings = 0x01
  case headers = 0x02
  case message = 0x03
  case trailers = 0x04
  case rst = 0x05
  case windowUpdate = 0x06
  case ping = 0x07
  case goAway = 0x08
}

/// Frame flags. Their meaning depends on the frame type; undefined bits must be zero.
public struct FrameFlags: OptionSet, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// HEADERS/MESSAGE from the client: the request has no further messages.
  public static let endStream = FrameFlags(rawValue: 0x01)
  /// MESSAGE: the payload is compressed with the stream's message encoding.
  public static let compressed = FrameFlags(rawValue: 0x02)
  /// MESSAGE: the message continues in the next MESSAGE frame of this stream.
  public static let more = FrameFlags(rawValue: 0x04)
  /// MESSAGE: no message at all (a bare half-close); requires `endStream` and an empty payload.
  public static let noMessage = FrameFlags(rawValue: 0x08)
  /// PING: this is the reply.
  public static let ack = FrameFlags(rawValue: 0x01)

  /// The flags each frame type may carry; anything else is a protocol error.
  public static func allowed(for type: FrameType) -> FrameFlags {
    switch type {
    case .headers: return .endStream
    case .message: return [.endStream, .compressed, .more, .noMessage]
    case .ping: return .ack
    case .settings, .trailers, .rst, .windowUpdate, .goAway: return []
    }
  }
}

/// Error codes carried by RST and GOAWAY. 0x0–0xC are numbered as in HTTP/2 so gRPC's
/// RST-to-status table applies unchanged.
public struct WireErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  public static let noError = WireErrorCode(rawValue: 0x0)
  public static let protocolError = WireErrorCode(rawValue: 0x1)
  public static let internalError = WireErrorCode(rawValue: 0x2)
  public static let flowControlError = WireErrorCode(rawValue: 0x3)
  public static let settingsTimeout = WireErrorCode(rawValue: 0x4)
  public static let streamClosed = WireErrorCode(rawValue: 0x5)
  public static let frameSizeError = WireErrorCode(rawValue: 0x6)
  public static let refusedStream = WireErrorCode(rawValue: 0x7)
  public static let cancel = WireErrorCode(rawValue: 0x8)
  public static let compressionError = WireErrorCode(rawValue: 0x9)
  public static let enhanceYourCalm = WireErrorCode(rawValue: 0xB)
  public static let inadequateSecurity = WireErrorCode(rawValue: 0xC)
  public static let unsupportedVersion = WireErrorCode(rawValue: 0x10)

  public var description: String {
    switch self.rawValue {
    case 0x0: return "NO_ERROR"
    case 0x1: return "PROTOCOL_ERROR"
    case 0x2: return "INTERNAL_ERROR"
    case 0x3: return "FLOW_CONTROL_ERROR"
    case 0x4: return "SETTINGS_TIMEOUT"
    case 0x5: return "STREAM_CLOSED"
    case 0x6: return "FRAME_SIZE_ERROR"
    case 0x7: return "REFUSED_STREAM"
    case 0x8: return "CANCEL"
    case 0x9: return "COMPRESSION_ERROR"
    case 0xB: return "ENHANCE_YOUR_CALM"
    case 0xC: return "INADEQUATE_SECURITY"
    case 0x10: return "UNSUPPORTED_VERSION"
    default: return "UNKNOWN(0x\(String(self.rawValue, radix: 16)))"
    }
  }
}

/// Hard limits that no SETTINGS value can raise.
public enum WireLimits {
  /// Largest frame payload any peer may announce (16 MiB − 1, so the first length byte is 0).
  public static let maxFrameSizeCap = 16_777_215
  /// Smallest MAX_FRAME_SIZE a peer may announce.
  public static let minFrameSize = 16_384
  /// Largest flow-control window.
  public static let maxWindow = Int(Int32.max)
  /// Largest stream id.
  public static let maxStreamID: UInt32 = 0x7FFF_FFFF
  /// Longest GOAWAY debug text in bytes.
  public static let maxGoAwayDebug = 1024
  /// Most entries in one SETTINGS frame.
  public static let maxSettingsEntries = 32
  /// Length of the fixed frame header.
  public static let frameHeaderLength = 10
}
