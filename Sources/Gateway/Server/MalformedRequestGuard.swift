import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import ServiceKit

/// Answers a connection whose first request NIO's HTTP parser rejects (an unknown method, a
/// malformed request line or header) with 400 in the envelope and closes it.
///
/// hummingbird-websocket's upgrade pipeline turns NIO's own HTTP error handling off, since
/// Hummingbird handles errors once a request has been negotiated; but a request that fails to
/// parse never gets that far, and the connection stayed open and unanswered until the client
/// gave up — any client could hold sockets that way. Once the first request has parsed, the
/// guard removes itself: Hummingbird (or the WebSocket) owns the connection from then on.
struct MalformedRequestGuard<Base: ServerChildChannel>: ServerChildChannel {
  typealias Value = Base.Value
  let base: Base

  func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
    self.base.setup(channel: channel, logger: logger).flatMapThrowing { value in
      let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
      try channel.pipeline.syncOperations.addHandler(FirstRequestParseGuard(), position: .after(decoder))
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

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    // The first part is the request head: the request line and headers parsed.
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
