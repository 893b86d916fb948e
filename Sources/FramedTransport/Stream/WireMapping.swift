import FramedWire
import GRPCCore
import NIOCore
import WireProtos
import SwiftProtobuf

import struct Foundation.Data

/// Conversions between GRPCCore's view of a call and the wire's messages, in one place.
enum WireMapping {
  static let timeoutKey = "grpc-timeout"

  /// Request metadata → wire entries, lifting `grpc-timeout` out into `timeout_us`. A key the
  /// wire can't carry fails the call (INTERNAL, as gRPC does) instead of vanishing.
  static func requestHeaders(method: MethodDescriptor, metadata: Metadata, encoding: MessageEncoding) throws(RPCError) -> RequestHeaders {
    var headers = RequestHeaders()
    headers.method = "/" + method.fullyQualifiedMethod
    for entry in metadata {
      if entry.key == timeoutKey {
        if case .string(let value) = entry.value, let us = parseTimeout(value) { headers.timeoutUs = us }
        continue
      }
      // Lowercased as HTTP/2 does, so the same metadata works on both transports.
      let key = entry.key.lowercased()
      try checkOutgoing(key: key, value: entry.value)
      headers.metadata.append(wireEntry(key: key, value: entry.value))
    }
    if encoding != .identity { headers.messageEncoding = encoding.rawValue }
    return headers
  }

  static func wireEntry(key: String, value: Metadata.Value) -> MetadataEntry {
    var e = MetadataEntry()
    e.key = key
    switch value {
    case .string(let s): e.text = s
    case .binary(let b): e.binary = Data(b)
    }
    return e
  }

  /// Response metadata → wire entries; throws for a key the wire can't carry.
  static func wireEntries(_ metadata: Metadata) throws(RPCError) -> [MetadataEntry] {
    var out: [MetadataEntry] = []
    out.reserveCapacity(metadata.count)
    for entry in metadata {
      let key = entry.key.lowercased()
      try checkOutgoing(key: key, value: entry.value)
      out.append(wireEntry(key: key, value: entry.value))
    }
    return out
  }

  /// The rules of docs/protocol.md §5.4 for what we send.
  static func checkOutgoing(key: String, value: Metadata.Value) throws(RPCError) {
    guard isValidKey(key) else {
      throw RPCError(
        code: .internalError, message: "metadata key \"\(key.prefix(64))\" can't be sent: keys are [0-9a-z_.-], at most 255 bytes, and grpc- keys are reserved")
    }
    if case .string(let text) = value, key.hasSuffix("-bin") || !text.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) {
      throw RPCError(code: .internalError, message: "metadata \"\(key)\" needs a binary value (-bin key) or printable ASCII text")
    }
    if case .binary = value, !key.hasSuffix("-bin") {
      throw RPCError(code: .internalError, message: "binary metadata \"\(key)\" needs a key ending in -bin")
    }
  }

  /// Wire entries → GRPCCore metadata; `nil` with a reason when a key or value breaks the rules.
  static func metadata(_ entries: [MetadataEntry]) -> Result<Metadata, RPCError> {
    var md = Metadata()
    md.reserveCapacity(entries.count)
    for e in entries {
      guard isValidKey(e.key) else {
        return .failure(RPCError(code: .internalError, message: "invalid metadata key \"\(e.key.prefix(64))\""))
      }
      let isBinary = e.key.hasSuffix("-bin")
      switch e.value {
      case .text(let t)?:
        guard !isBinary, t.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else {
          return .failure(RPCError(code: .internalError, message: "invalid text value for metadata key \"\(e.key)\""))
        }
        md.addString(t, forKey: e.key)
      case .binary(let b)?:
        guard isBinary else {
          return .failure(RPCError(code: .internalError, message: "binary value for non -bin metadata key \"\(e.key)\""))
        }
        md.addBinary(Array(b), forKey: e.key)
      case nil:
        if isBinary { md.addBinary([], forKey: e.key) } else { md.addString("", forKey: e.key) }
      }
    }
    return .success(md)
  }

  /// `grpc-` keys that may travel as metadata (GRPCCore's retry bookkeeping); all others are
  /// reserved for the transport.
  static let allowedReservedKeys: Set<String> = ["grpc-previous-rpc-attempts", "grpc-retry-pushback-ms"]

  static func isValidKey(_ key: String) -> Bool {
    guard !key.isEmpty, key.utf8.count <= 255, !key.hasPrefix(":") else { return false }
    if key.hasPrefix("grpc-"), !allowedReservedKeys.contains(key) { return false }
    return key.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D }
  }

  // MARK: Timeouts (gRPC's "grpc-timeout": up to 8 digits and a unit)

  static func parseTimeout(_ value: String) -> UInt64? {
    guard let unit = value.last, value.count >= 2, value.count <= 9,
      let amount = UInt64(value.dropLast())
    else { return nil }
    switch unit {
    case "H": return amount * 3_600_000_000
    case "M": return amount * 60_000_000
    case "S": return amount * 1_000_000
    case "m": return amount * 1_000
    case "u": return amount
    case "n": return max(1, amount / 1_000)
    default: return nil
    }
  }

  // MARK: Status

  static let statusDetailsKey = "grpc-status-details-bin"

  /// Status + trailing metadata → TRAILERS; `grpc-status-details-bin` moves to its own field.
  /// Trailing metadata the wire can't carry turns the status into INTERNAL naming the key.
  static func trailers(status: Status, metadata: Metadata) -> Trailers {
    var t = Trailers()
    t.code = UInt32(status.code.rawValue)
    t.message = status.message
    for entry in metadata {
      if entry.key == statusDetailsKey, case .binary(let b) = entry.value {
        t.statusDetails = Data(b)
        continue
      }
      let key = entry.key.lowercased()
      do {
        try checkOutgoing(key: key, value: entry.value)
      } catch {
        var bad = Trailers()
        bad.code = UInt32(Status.Code.internalError.rawValue)
        bad.message = "server produced invalid trailing metadata: \(error.message)"
        return bad
      }
      t.metadata.append(wireEntry(key: key, value: entry.value))
    }
    return t
  }

  static func status(from trailers: Trailers) -> (Status, Metadata) {
    let code = Status.Code(rawValue: Int(trailers.code)) ?? .unknown
    var md: Metadata
    switch metadata(trailers.metadata) {
    case .success(let m): md = m
    case .failure(let e): return (Status(code: .internalError, message: e.message), [:])
    }
    if !trailers.statusDetails.isEmpty { md.addBinary(Array(trailers.statusDetails), forKey: statusDetailsKey) }
    return (Status(code: code, message: trailers.message), md)
  }

  /// gRPC's RST → status table.
  static func status(forReset code: WireErrorCode) -> RPCError {
    switch code {
    case .refusedStream: return RPCError(code: .unavailable, message: "stream refused by the server before processing (REFUSED_STREAM); safe to retry")
    case .cancel: return RPCError(code: .cancelled, message: "stream cancelled by the peer (CANCEL)")
    case .enhanceYourCalm: return RPCError(code: .resourceExhausted, message: "stream reset by the peer (ENHANCE_YOUR_CALM)")
    case .inadequateSecurity: return RPCError(code: .permissionDenied, message: "stream reset by the peer (INADEQUATE_SECURITY)")
    default: return RPCError(code: .internalError, message: "stream reset by the peer (\(code))")
    }
  }

  static func encode<M: SwiftProtobuf.Message>(_ message: M) -> ByteBuffer {
    // Serializing our own well-formed header messages cannot fail.
    let bytes: [UInt8] = (try? message.serializedBytes()) ?? []
    return ByteBuffer(bytes: bytes)
  }
}
