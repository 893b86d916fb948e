import CompressNIO
import NIOCore

/// Per-message compression (docs/protocol.md §8): a fresh zlib context per message, through
/// compress-nio. "deflate" is the zlib format (RFC 1950), as in gRPC; "gzip" is RFC 1952.
public enum MessageEncoding: String, Sendable, CaseIterable {
  case identity
  case deflate
  case gzip

  /// Parses the `message_encoding` header field; "" means identity. `nil` for unknown names.
  public init?(headerValue: String) {
    if headerValue.isEmpty { self = .identity } else { self.init(rawValue: headerValue) }
  }

  /// The bit of this encoding in ACCEPT_ENCODINGS.
  public var bit: EncodingSet {
    switch self {
    case .identity: return .identity
    case .deflate: return .deflate
    case .gzip: return .gzip
    }
  }

  private var algorithm: CompressionAlgorithm? {
    switch self {
    case .identity: return nil
    case .deflate: return .zlib()
    case .gzip: return .gzip()
    }
  }

  /// Why a compressed message could not be decoded.
  public enum DecompressionError: Error, Equatable, Sendable {
    /// The decompressed message is over the limit (a decompression bomb, or just too big).
    case tooLarge(limit: Int)
    /// Not valid data for this encoding.
    case corrupt(String)
  }

  /// Compresses one message; `nil` when it must go uncompressed (identity, or zlib failed —
  /// a sender may always skip compressing a message).
  public func compress(_ message: ByteBuffer) -> ByteBuffer? {
    guard let algorithm = self.algorithm else { return nil }
    var input = message
    return try? input.compress(with: algorithm)
  }

  /// Decompresses one message, refusing to produce more than `maxSize` bytes.
  public func decompress(_ message: ByteBuffer, maxSize: Int) throws(DecompressionError) -> ByteBuffer {
    guard let algorithm = self.algorithm else { return message }
    // compress-nio returns quietly on a truncated stream. zlib stops consuming input at the end
    // of a complete stream, so one sentinel byte after the data tells the two apart: exactly
    // that byte left over means complete; none means truncated; more means trailing garbage.
    var input = ByteBufferAllocator().buffer(capacity: message.readableBytes + 1)
    input.writeImmutableBuffer(message)
    input.writeInteger(UInt8(0))
    do {
      let decompressor = algorithm.decompressor
      try decompressor.startStream()
      defer { try? decompressor.finishStream() }
      let output = try input.decompressStream(with: decompressor, maxSize: maxSize)
      // compress-nio's bound is approximate (allocations round up): enforce it exactly.
      guard output.readableBytes <= maxSize else { throw DecompressionError.tooLarge(limit: maxSize) }
      guard input.readableBytes == 1 else {
        throw DecompressionError.corrupt("\(self.rawValue) data is \(input.readableBytes == 0 ? "truncated" : "followed by trailing bytes")")
      }
      return output
    } catch let error as DecompressionError {
      throw error
    } catch let error as CompressNIOError where error == .bufferOverflow {
      throw .tooLarge(limit: maxSize)
    } catch {
      throw .corrupt("\(self.rawValue) data is invalid: \(error)")
    }
  }
}
