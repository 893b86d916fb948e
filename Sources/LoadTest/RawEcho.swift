import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The machine's ceiling: a plain SwiftNIO length-prefixed echo (u32 length + payload) with
/// no RPC layer at all, one connection, a fixed number of requests outstanding.
public enum RawEcho {
  /// Echoes every frame; a frame whose payload is "S" + u32 n is answered with n frames of
  /// `streamPayload` (the one-way streaming ceiling).
  final class ServerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      var frame = Self.unwrapInboundIn(data)
      if frame.readableBytes == 5, frame.getInteger(at: frame.readerIndex, as: UInt8.self) == UInt8(ascii: "S") {
        frame.moveReaderIndex(forwardBy: 1)
        let n = Int(frame.readInteger(as: UInt32.self)!)
        var out = context.channel.allocator.buffer(capacity: 68 * 1024)
        for _ in 0..<n {
          out.writeInteger(UInt32(64))
          out.writeRepeatingByte(0x51, count: 64)
          if out.readableBytes >= 64 * 1024 {
            context.write(Self.wrapOutboundOut(out), promise: nil)
            out = context.channel.allocator.buffer(capacity: 68 * 1024)
          }
        }
        context.write(Self.wrapOutboundOut(out), promise: nil)
        return
      }
      var out = context.channel.allocator.buffer(capacity: frame.readableBytes + 4)
      out.writeInteger(UInt32(frame.readableBytes))
      out.writeBuffer(&frame)
      context.write(Self.wrapOutboundOut(out), promise: nil)
    }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
  }

  struct LengthPrefixDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
      guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
        buffer.readableBytes >= 4 + Int(length)
      else { return .needMoreData }
      buffer.moveReaderIndex(forwardBy: 4)
      context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
      return .continue
    }
  }

  /// Starts the echo server on 127.0.0.1, port 0.
  public static func startServer(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> any Channel {
    try await ServerBootstrap(group: group)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { ch in
        ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixDecoder()))
          try ch.pipeline.syncOperations.addHandler(ServerHandler())
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
  }

  /// Keeps `outstanding` requests in flight for `duration`; every reply is timed.
  final class ClientHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: all state is touched only on the channel's event loop; results are read
    // after `done` completes, which happens-after every write to them.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let payload: Int
    let outstanding: Int
    let deadline: NIODeadline
    let streamCount: Int?
    var sentAt: [NIODeadline] = []
    var head = 0
    var latency = LatencyRecorder()
    var completed = 0
    let done: EventLoopPromise<Void>
    var finished = false

    init(payload: Int, outstanding: Int, deadline: NIODeadline, streamCount: Int?, done: EventLoopPromise<Void>) {
      self.payload = payload
      self.outstanding = outstanding
      self.deadline = deadline
      self.streamCount = streamCount
      self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
      if let n = self.streamCount {
        var b = context.channel.allocator.buffer(capacity: 9)
        b.writeInteger(UInt32(5))
        b.writeInteger(UInt8(ascii: "S"))
        b.writeInteger(UInt32(n))
        context.writeAndFlush(Self.wrapOutboundOut(b), promise: nil)
        return
      }
      for _ in 0..<self.outstanding { self.send(context) }
      context.flush()
    }

    func send(_ context: ChannelHandlerContext) {
      var b = context.channel.allocator.buffer(capacity: 4 + self.payload)
      b.writeInteger(UInt32(self.payload))
      b.writeRepeatingByte(0x51, count: self.payload)
      self.sentAt.append(.now())
      context.write(Self.wrapOutboundOut(b), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      guard !self.finished else { return }
      self.completed += 1
      if let n = self.streamCount {
        if self.completed == n || NIODeadline.now() >= self.deadline { self.finish(context) }
        return
      }
      let now = NIODeadline.now()
      self.latency.record(.nanoseconds(Int64((now - self.sentAt[self.head]).nanoseconds)))
      self.head += 1
      if self.head > 4096 {
        self.sentAt.removeFirst(self.head)
        self.head = 0
      }
      if now >= self.deadline { return self.finish(context) }
      self.send(context)
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func finish(_ context: ChannelHandlerContext) {
      self.finished = true
      self.done.succeed(())
      context.close(promise: nil)
    }
  }

  /// Round trips per second (or one-way messages per second with `streamCount`) and latencies.
  public static func run(port: Int, payload: Int, outstanding: Int, duration: Duration, streamCount: Int? = nil) async throws -> (
    opsPerSecond: Double, latency: LatencyRecorder
  ) {
    let group = MultiThreadedEventLoopGroup.singleton
    let loop = group.next()
    let done = loop.makePromise(of: Void.self)
    let deadline = NIODeadline.now() + .nanoseconds(Int64(duration.microseconds * 1000))
    let handler = ClientHandler(payload: payload, outstanding: outstanding, deadline: deadline, streamCount: streamCount, done: done)
    let start = ContinuousClock.now
    _ = try await ClientBootstrap(group: loop)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { ch in
        ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixDecoder()))
          try ch.pipeline.syncOperations.addHandler(handler)
        }
      }
      .connect(host: "127.0.0.1", port: port).get()
    try await done.futureResult.get()
    let elapsed = ContinuousClock.now - start
    let (completed, latency) = try await loop.submit { (handler.completed, handler.latency) }.get()
    return (Double(completed) / (Double(elapsed.microseconds) / 1e6), latency)
  }
}
