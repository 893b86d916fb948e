import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import ServiceKit

/// What every API connection gets before Hummingbird sees it: a small first receive buffer,
/// and a guard that answers a first request NIO's HTTP parser rejects (an unknown method, a
/// malformed request line or header) with 400 in the envelope and closes the connection, and
/// closes one that has sent no complete request head within `firstRequestTimeout` (a client
/// that connects and says nothing, or trickles its headers, held its socket forever: the
/// idle timeout of Hummingbird's HTTP/1 handler only starts after the first request).
///
/// NIO keeps a connection's receive buffer for the connection's whole life, and at its default
/// first size (2 KiB) that was 2 KB of every open event stream (heaptrack, 2,000 streams).
/// Requests are mostly much smaller; the adaptive allocator grows the buffer for a connection
/// that sends more.
///
/// hummingbird-websocket's upgrade pipeline turns NIO's own HTTP error handling off, since
/// Hummingbird handles errors once a request has been negotiated; but a request that fails to
/// parse never gets that far, and the connection stayed open and unanswered until the client
/// gave up — any client could hold sockets that way. Once the first request has parsed, the
/// guard removes itself: Hummingbird (or the WebSocket) owns the connection from then on.
struct APIChildChannel<Base: ServerChildChannel>: ServerChildChannel {
  typealias Value = Base.Value
  let base: Base
  let firstRequestTimeout: TimeAmount

  static var receiveBuffers: AdaptiveRecvByteBufferAllocator { AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536) }

  func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
    do {
      try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
    } catch {
      return channel.eventLoop.makeFailedFuture(error)
    }
    return self.base.setup(channel: channel, logger: logger).flatMapThrowing { value in
      let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
      try channel.pipeline.syncOperations.addHandler(FirstRequestParseGuard(timeout: self.firstRequestTimeout), position: .after(decoder))
      return value
    }
  }

  func handle(value: Value, logger: Logger) async {
    await self.base.handle(value: value, logger: logger)
  }
}

/// Between the HTTP decoder and the upgrade handler until the first request part passes.
final class FirstRequestParseGuard: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  let timeout: TimeAmount
  private var deadline: Scheduled<Void>?

  init(timeout: TimeAmount) { self.timeout = timeout }

  func handlerAdded(context: ChannelHandlerContext) {
    let channel = context.channel
    self.deadline = context.eventLoop.scheduleTask(in: self.timeout) { channel.close(promise: nil) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.deadline?.cancel()
    self.deadline = nil
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    // The first part is the request head: the request line and headers parsed.
    self.deadline?.cancel()
    self.deadline = nil
    context.fireChannelRead(data)
    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    guard error is HTTPParserError else {
      context.fireErrorCaught(error)
      return
    }
    // Nothing has been answered on this connection yet, so a response may start here.
    let requestID = RequestIDInterceptor.makeID()
    let body = Envelope.error(.gateway(400, "the request is not valid HTTP/1.1 (\(error))"), requestID: requestID)
    let head = HTTPResponseHead(
      version: .http1_1, status: .badRequest,
      headers: [
        "Content-Type": "application/json", "Content-Length": "\(body.count)", "X-Request-Id": requestID, "Connection": "close",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
      ])
    context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
    context.write(Self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
    let channel = context.channel
    context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    context.fireErrorCaught(error)
  }
}
