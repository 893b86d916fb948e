import NIOCore

/// Decodes the peer's preface and then frames from a byte stream.
///
/// Pure and incremental: feed it the cumulated read buffer; it consumes whole items only and
/// returns `nil` when more bytes are needed. Every syntactic check happens here, before any
/// payload is buffered: a length over the limit is rejected as soon as the 10-byte header is in.
public struct FrameDecoder: Sendable {
  /// Largest non-header frame payload we accept (our MAX_FRAME_SIZE).
  public var maxFrameSize: Int
  /// Largest HEADERS / TRAILERS payload we accept (our MAX_HEADER_LIST_SIZE).
  public var maxHeaderListSize: Int
  private var awaitingPreface: Bool

  public init(settings: ConnectionSettings, expectPreface: Bool = true) {
    self.maxFrameSize = settings.maxFrameSize
    self.maxHeaderListSize = settings.maxHeaderListSize
    self.awaitingPreface = expectPreface
  }

  /// Decodes the next item, or returns `nil` if `buffer` holds less than one whole item.
  public mutating func decode(_ buffer: inout ByteBuffer) throws(ConnectionError) -> DecodedItem? {
    if self.awaitingPreface {
      // Check the magic as soon as the bytes we have allow it: a wrong protocol fails fast.
      let available = min(buffer.readableBytes, Preface.magic.count)
      if let head = buffer.getBytes(at: buffer.readerIndex, length: available),
        head != Array(Preface.magic.prefix(available))
      {
        throw ConnectionError(.protocolError, "bad connection preface: not a Quizwire framed-wire peer")
      }
      guard buffer.readableBytes >= Preface.length else { return nil }
      buffer.moveReaderIndex(forwardBy: Preface.magic.count)
      let version = buffer.readInteger(as: UInt16.self)!
      guard version == Preface.currentVersion else {
        throw ConnectionError(.unsupportedVersion, "unsupported protocol version \(version); supported versions: 1")
      }
      self.awaitingPreface = false
      return .preface(version: version)
    }

    guard
      let (length32, rawType, rawFlags, rawStream) = buffer.getMultipleIntegers(
        at: buffer.readerIndex, as: (UInt32, UInt8, UInt8, UInt32).self)
    else { return nil }
    let length = Int(length32)
    let flags = FrameFlags(rawValue: rawFlags)

    guard rawStream & 0x8000_0000 == 0 else {
      throw ConnectionError(.protocolError, "reserved bit of the stream id is set")
    }
    let streamID = rawStream

    guard let type = FrameType(rawValue: rawType) else {
      if rawType >= 0x80 {
        guard length <= self.maxFrameSize else {
          throw ConnectionError(.frameSizeError, "extension frame of \(length) bytes exceeds MAX_FRAME_SIZE \(self.maxFrameSize)")
        }
        guard buffer.readableBytes >= WireLimits.frameHeaderLength + length else { return nil }
        buffer.moveReaderIndex(forwardBy: WireLimits.frameHeaderLength + length)
        return .frame(.unknownExtension(type: rawType, streamID: streamID))
      }
      throw ConnectionError(.protocolError, "unknown frame type 0x\(String(rawType, radix: 16))")
    }

    try Self.validateHeader(
      type: type, flags: flags, length: length, streamID: streamID,
      maxFrameSize: self.maxFrameSize, maxHeaderListSize: self.maxHeaderListSize)

    guard buffer.readableBytes >= WireLimits.frameHeaderLength + length else { return nil }
    buffer.moveReaderIndex(forwardBy: WireLimits.frameHeaderLength)
    var payload = buffer.readSlice(length: length)!
    return .frame(try Self.parsePayload(type: type, flags: flags, streamID: streamID, payload: &payload))
  }

  static func validateHeader(
    type: FrameType, flags: FrameFlags, length: Int, streamID: UInt32,
    maxFrameSize: Int, maxHeaderListSize: Int
  ) throws(ConnectionError) {
    switch type {
    case .headers, .trailers:
      guard length <= maxHeaderListSize else {
        throw ConnectionError(.frameSizeError, "\(type) of \(length) bytes exceeds MAX_HEADER_LIST_SIZE \(maxHeaderListSize)")
      }
    default:
      guard length <= maxFrameSize else {
        throw ConnectionError(.frameSizeError, "\(type) frame of \(length) bytes exceeds MAX_FRAME_SIZE \(maxFrameSize)")
      }
    }
    let extra = flags.subtracting(FrameFlags.allowed(for: type))
    guard extra.isEmpty else {
      throw ConnectionError(.protocolError, "\(type) frame with undefined flags 0x\(String(extra.rawValue, radix: 16))")
    }
    switch type {
    case .settings, .ping, .goAway:
      guard streamID == 0 else { throw ConnectionError(.protocolError, "\(type) frame on stream \(streamID), must be 0") }
    case .headers, .message, .trailers, .rst:
      guard streamID != 0 else { throw ConnectionError(.protocolError, "\(type) frame on stream 0") }
    case .windowUpdate:
      break
    }
    switch type {
    case .rst, .windowUpdate:
      guard length == 4 else { throw ConnectionError(.frameSizeError, "\(type) payload must be 4 bytes, got \(length)") }
    case .ping:
      guard length == 8 else { throw ConnectionError(.frameSizeError, "PING payload must be 8 bytes, got \(length)") }
    case .goAway:
      guard length >= 8 else { throw ConnectionError(.frameSizeError, "GOAWAY payload must be at least 8 bytes, got \(length)") }
      guard length <= 8 + WireLimits.maxGoAwayDebug else {
        throw ConnectionError(.frameSizeError, "GOAWAY debug text over \(WireLimits.maxGoAwayDebug) bytes")
      }
    case .settings:
      guard length % 6 == 0 else { throw ConnectionError(.frameSizeError, "SETTINGS length \(length) is not a multiple of 6") }
      guard length / 6 <= WireLimits.maxSettingsEntries else {
        throw ConnectionError(.frameSizeError, "SETTINGS with more than \(WireLimits.maxSettingsEntries) entries")
      }
    case .message:
      if flags.contains(.more) {
        guard !flags.contains(.endStream), length > 0 else {
          throw ConnectionError(.protocolError, "MORE cannot be combined with END_STREAM or an empty payload")
        }
      }
      if flags.contains(.noMessage) {
        guard length == 0, flags.contains(.endStream), !flags.contains(.compressed), !flags.contains(.more) else {
          throw ConnectionError(.protocolError, "NO_MESSAGE needs END_STREAM, an empty payload and no other flags")
        }
      }
    case .headers, .trailers:
      break
    }
  }

  static func parsePayload(
    type: FrameType, flags: FrameFlags, streamID: UInt32, payload: inout ByteBuffer
  ) throws(ConnectionError) -> Frame {
    switch type {
    case .settings:
      var entries: [SettingsEntry] = []
      entries.reserveCapacity(payload.readableBytes / 6)
      while let (id, value) = payload.readMultipleIntegers(as: (UInt16, UInt32).self) {
        entries.append(SettingsEntry(id: id, value: value))
      }
      return .settings(entries)
    case .headers:
      return .headers(streamID: streamID, endStream: flags.contains(.endStream), payload: payload)
    case .message:
      return .message(streamID: streamID, flags: flags, payload: payload)
    case .trailers:
      return .trailers(streamID: streamID, payload: payload)
    case .rst:
      return .rst(streamID: streamID, code: WireErrorCode(rawValue: payload.readInteger()!))
    case .windowUpdate:
      return .windowUpdate(streamID: streamID, increment: payload.readInteger()!)
    case .ping:
      return .ping(ack: flags.contains(.ack), opaque: payload.readInteger()!)
    case .goAway:
      let (last, code) = payload.readMultipleIntegers(as: (UInt32, UInt32).self)!
      let debug = payload.readString(length: payload.readableBytes) ?? ""
      return .goAway(lastStreamID: last & WireLimits.maxStreamID, code: WireErrorCode(rawValue: code), debug: debug)
    }
  }
}
