import NIOCore

/// One decoded frame. Payloads of HEADERS, MESSAGE and TRAILERS stay as `ByteBuffer` slices of
/// the read buffer (no copy); their protobuf is decoded by the connection, so an undecodable one
/// is a stream error rather than a connection error.
public enum Frame: Hashable, Sendable {
  case settings([SettingsEntry])
  case headers(streamID: UInt32, endStream: Bool, payload: ByteBuffer)
  case message(streamID: UInt32, flags: FrameFlags, payload: ByteBuffer)
  case trailers(streamID: UInt32, payload: ByteBuffer)
  case rst(streamID: UInt32, code: WireErrorCode)
  case windowUpdate(streamID: UInt32, increment: UInt32)
  case ping(ack: Bool, opaque: UInt64)
  case goAway(lastStreamID: UInt32, code: WireErrorCode, debug: String)
  /// An extension frame (type 0x80–0xFF): length-checked and otherwise ignored.
  case unknownExtension(type: UInt8, streamID: UInt32)

  /// The stream the frame belongs to; 0 for connection frames.
  public var streamID: UInt32 {
    switch self {
    case .settings, .ping, .goAway: return 0
    case .headers(let id, _, _), .message(let id, _, _), .trailers(let id, _), .rst(let id, _),
      .windowUpdate(let id, _), .unknownExtension(_, let id):
      return id
    }
  }
}

/// What the decoder yields: the peer's preface once, then frames.
public enum DecodedItem: Hashable, Sendable {
  case preface(version: UInt16)
  case frame(Frame)
}
