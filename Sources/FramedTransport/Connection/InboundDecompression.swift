import FramedWire
import GRPCCore
import NIOCore

extension FramedConnectionHandler {
  /// An inbound message as its call reads it: decompressed with the encoding the peer named in
  /// its HEADERS (docs/protocol.md §7.3), never past our MAX_MESSAGE_SIZE. Both roles share it —
  /// what arrives is a request on a server and a response on a client. A failure ends that call
  /// with the returned error: the server answers it with TRAILERS, the client resets the stream.
  func decompressInbound(id: UInt32, _ bytes: ByteBuffer, compressed: Bool) -> Result<ByteBuffer, RPCError> {
    guard compressed else { return .success(bytes) }
    let (what, whose) = self.role == .server ? ("request", "server") : ("response", "client")
    guard let encoding = self.inboundEncodings[id], encoding != .identity else {
      return .failure(RPCError(code: .internalError, message: "compressed message but the \(what)'s message_encoding is identity"))
    }
    do {
      return .success(try encoding.decompress(bytes, maxSize: self.config.settings.maxMessageSize))
    } catch {
      switch error {
      case .tooLarge(let limit):
        return .failure(
          RPCError(
            code: .resourceExhausted,
            message: "\(what) message decompresses to more than the \(whose)'s limit of \(limit) bytes (MAX_MESSAGE_SIZE)"))
      case .corrupt(let reason):
        return .failure(RPCError(code: .internalError, message: reason))
      }
    }
  }
}
