import NIOCore

/// Writes frames into a `ByteBuffer`. Stateless; many frames can be appended to one buffer so a
/// whole event-loop tick's worth of frames leaves in a single write.
public enum FrameEncoder {
  /// Writes the 10-byte header.
  @inlinable
  public static func writeHeader(
    length: Int, type: UInt8, flags: FrameFlags, streamID: UInt32, into buffer: inout ByteBuffer
  ) {
    // One bounds check and one write for the fixed header.
    buffer.writeMultipleIntegers(UInt32(length), type, flags.rawValue, streamID)
  }

  /// Appends `frame` to `buffer`.
  public static func encode(_ frame: Frame, into buffer: inout ByteBuffer) {
    switch frame {
    case .settings(let entries):
      writeHeader(length: entries.count * 6, type: FrameType.settings.rawValue, flags: [], streamID: 0, into: &buffer)
      for e in entries { buffer.writeMultipleIntegers(e.id, e.value) }
    case .headers(let id, let endStream, let payload):
      writeHeader(
        length: payload.readableBytes, type: FrameType.headers.rawValue,
        flags: endStream ? .endStream : [], streamID: id, into: &buffer)
      buffer.writeImmutableBuffer(payload)
    case .message(let id, let flags, let payload):
      writeHeader(length: payload.readableBytes, type: FrameType.message.rawValue, flags: flags, streamID: id, into: &buffer)
      buffer.writeImmutableBuffer(payload)
    case .trailers(let id, let payload):
      writeHeader(length: payload.readableBytes, type: FrameType.trailers.rawValue, flags: [], streamID: id, into: &buffer)
      buffer.writeImmutableBuffer(payload)
    case .rst(let id, let code):
      writeHeader(length: 4, type: FrameType.rst.rawValue, flags: [], streamID: id, into: &buffer)
      buffer.writeInteger(code.rawValue)
    case .windowUpdate(let id, let increment):
      writeHeader(length: 4, type: FrameType.windowUpdate.rawValue, flags: [], streamID: id, into: &buffer)
      buffer.writeInteger(increment)
    case .ping(let ack, let opaque):
      writeHeader(length: 8, type: FrameType.ping.rawValue, flags: ack ? .ack : [], streamID: 0, into: &buffer)
      buffer.writeInteger(opaque)
    case .goAway(let last, let code, let debug):
      var text = Array(debug.utf8)
      if text.count > WireLimits.maxGoAwayDebug { text = Array(text.prefix(WireLimits.maxGoAwayDebug)) }
      writeHeader(length: 8 + text.count, type: FrameType.goAway.rawValue, flags: [], streamID: 0, into: &buffer)
      buffer.writeMultipleIntegers(last, code.rawValue)
      buffer.writeBytes(text)
    case .unknownExtension(let type, let id):
      writeHeader(length: 0, type: type, flags: [], streamID: id, into: &buffer)
    }
  }

  /// Appends a SETTINGS frame carrying `settings.allEntries`.
  public static func encodeSettings(_ settings: ConnectionSettings, into buffer: inout ByteBuffer) {
    encode(.settings(settings.allEntries.map { SettingsEntry(id: $0.0, value: $0.1) }), into: &buffer)
  }
}
