import FramedWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A scripted framed-wire peer on a real socket, for behaviour a well-behaved implementation
/// never produces (resets, silence, garbage). It decodes with `FrameDecoder` and answers with
/// whatever `script` writes.
final class RawPeerHandler: ChannelInboundHandler, @unchecked Sendable {
  // @unchecked: only touched on its channel's event loop (NIO handler confinement).
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  var decoder: FrameDecoder
  var cumulation = ByteBuffer()
  let script: @Sendable (DecodedItem, inout ByteBuffer) -> Void
  let received: NIOLockedValueBox<[DecodedItem]>

  init(expectPreface: Bool, received: NIOLockedValueBox<[DecodedItem]>, script: @escaping @Sendable (DecodedItem, inout ByteBuffer) -> Void) {
    var settings = ConnectionSettings()
    settings.maxFrameSize = WireLimits.maxFrameSizeCap
    settings.maxHeaderListSize = WireLimits.maxFrameSizeCap
    self.decoder = FrameDecoder(settings: settings, expectPreface: expectPreface)
    self.script = script
    self.received = received
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var bytes = Self.unwrapInboundIn(data)
    self.cumulation.writeBuffer(&bytes)
    var out = context.channel.allocator.buffer(capacity: 256)
    while let item = try? self.decoder.decode(&self.cumulation) {
      self.received.withLockedValue { $0.append(item) }
      self.script(item, &out)
    }
    if out.readableBytes > 0 { context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil) }
  }
}

/// A listening raw peer acting as a server.
final class RawServer: Sendable {
  let channel: any Channel
  let received = NIOLockedValueBox<[DecodedItem]>([])
  var port: Int { self.channel.localAddress!.port! }

  init(script: @escaping @Sendable (DecodedItem, inout ByteBuffer) -> Void) async throws {
    let received = self.received
    self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelInitializer { ch in
        ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandler(RawPeerHandler(expectPreface: true, received: received, script: script))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
  }

  /// Answers the client's preface with ours and default SETTINGS.
  static func handshake(_ item: DecodedItem, _ out: inout ByteBuffer) {
    if case .preface = item {
      Preface.write(into: &out)
      FrameEncoder.encodeSettings(ConnectionSettings(), into: &out)
    }
  }

  func close() async { try? await self.channel.close() }
}

/// Collects everything a server sends back to raw bytes we write, until it closes or time is up.
final class RawClient: Sendable {
  final class Collector: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: only touched on its channel's event loop.
    typealias InboundIn = ByteBuffer
    let bytes: NIOLockedValueBox<[UInt8]>
    init(_ bytes: NIOLockedValueBox<[UInt8]>) { self.bytes = bytes }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      let b = Self.unwrapInboundIn(data)
      self.bytes.withLockedValue { $0 += b.readableBytesView }
    }
  }

  let channel: any Channel
  let bytes = NIOLockedValueBox<[UInt8]>([])

  init(port: Int) async throws {
    let bytes = self.bytes
    self.channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Collector(bytes)) } }
      .connect(host: "127.0.0.1", port: port).get()
  }

  func write(_ build: (inout ByteBuffer) -> Void) async throws {
    var b = ByteBuffer()
    build(&b)
    try await self.channel.writeAndFlush(b)
  }

  /// Waits for the server to close (or `timeout`), then decodes what it sent.
  func responses(timeout: Duration = .seconds(3), untilClosed: Bool = true, until: (([DecodedItem]) -> Bool)? = nil) async throws -> (
    items: [DecodedItem], closed: Bool
  ) {
    let deadline = ContinuousClock.now + timeout
    var closed = false
    while ContinuousClock.now < deadline {
      closed = !self.channel.isActive
      if closed && untilClosed { break }
      if let until, until(Self.decode(self.bytes.withLockedValue { $0 })) { break }
      try await Task.sleep(for: .milliseconds(5))
    }
    return (Self.decode(self.bytes.withLockedValue { $0 }), !self.channel.isActive)
  }

  static func decode(_ bytes: [UInt8]) -> [DecodedItem] {
    var settings = ConnectionSettings()
    settings.maxFrameSize = WireLimits.maxFrameSizeCap
    var d = FrameDecoder(settings: settings)
    var b = ByteBuffer(bytes: bytes)
    var items: [DecodedItem] = []
    while let item = try? d.decode(&b) { items.append(item) }
    return items
  }

  func close() async { try? await self.channel.close() }
}
