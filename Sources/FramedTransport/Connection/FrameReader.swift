import FramedWire
import NIOCore

/// Thin NIO shell around `FrameDecoder`: bytes in, preface and frames out. A `ConnectionError`
/// from the decoder reaches the connection handler through `errorCaught`, and nothing after a
/// bad frame is decoded.
///
/// A plain handler rather than NIO's generic `ByteToMessageHandler`: that one is not
/// specialized across the module boundary, and its per-frame generic metadata lookups showed
/// up in profiles of streaming calls.
final class FrameReader: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = DecodedItem

  private var decoder: FrameDecoder
  private var pending: ByteBuffer?
  private var failed = false

  init(settings: ConnectionSettings) {
    self.decoder = FrameDecoder(settings: settings)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !self.failed else { return }
    var incoming = Self.unwrapInboundIn(data)
    if var pending = self.pending.take() {
      pending.writeBuffer(&incoming)
      incoming = pending
    }
    do {
      while let item = try self.decoder.decode(&incoming) {
        context.fireChannelRead(Self.wrapInboundOut(item))
        // The handler may have been removed while that frame was handled.
        if self.failed { return }
      }
    } catch {
      self.failed = true
      context.fireErrorCaught(error)
      return
    }
    if incoming.readableBytes > 0 {
      // Keep only the unread tail; a long-lived buffer must not grow with what was consumed.
      if incoming.readerIndex > 65_536 { incoming.discardReadBytes() }
      self.pending = incoming
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.failed = true
    self.pending = nil
  }
}
