import FramedWire
import NIOCore

/// Thin NIO shell around `FrameDecoder`: bytes in, preface and frames out. A `ConnectionError`
/// from the decoder reaches the connection handler through `errorCaught`.
struct FrameDecoderHandler: ByteToMessageDecoder {
  typealias InboundOut = DecodedItem
  var decoder: FrameDecoder

  init(settings: ConnectionSettings) {
    self.decoder = FrameDecoder(settings: settings)
  }

  mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let item = try self.decoder.decode(&buffer) else { return .needMoreData }
    context.fireChannelRead(Self.wrapInboundOut(item))
    return .continue
  }

  mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
    while try self.decode(context: context, buffer: &buffer) == .continue {}
    return .needMoreData
  }
}
