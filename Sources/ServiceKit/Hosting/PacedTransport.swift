import GRPCCore
import NIOConcurrencyHelpers
import NIOCore

/// Keeps each call's response writer from running ahead of the event loops.
///
/// grpc-swift-nio-transport hands every response message to the connection's event loop as a
/// task and returns at once while the stream is writable (NIO's `NIOAsyncWriter`), so a fast
/// producer queues messages faster than the loop writes them. When the client stops reading,
/// the stream turns unwritable only once the socket is full, and everything queued by then
/// still lands in the connection's send buffer: a client advertising a 2^31−1 window that
/// never reads cost about 100 MB per stream. Every `Pace.bytes` (or `Pace.messages`) the writer
/// here waits for one task on each loop: the messages before it have been written by then,
/// and if that turned the stream unwritable the writer knows, so its next write waits.
struct PacedServerTransport<Base: ServerTransport>: ServerTransport {
  typealias Bytes = Base.Bytes

  let base: Base
  let loops: [any EventLoop]

  func configure(context: GRPCServerContext) { self.base.configure(context: context) }

  func listen(streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void) async throws {
    let loops = self.loops
    try await self.base.listen { stream, context in
      let outbound = RPCWriter.Closable(wrapping: PacedWriter(base: stream.outbound, loops: loops))
      await streamHandler(RPCStream(descriptor: stream.descriptor, inbound: stream.inbound, outbound: outbound), context)
    }
  }

  func beginGracefulShutdown() { self.base.beginGracefulShutdown() }
}

/// How much a writer may write between two round trips through the loops.
enum Pace {
  static let bytes = 64 * 1024
  static let messages = 16
}

private struct PacedWriter<Bytes: GRPCContiguousBytes & Sendable>: ClosableRPCWriterProtocol {
  typealias Element = RPCResponsePart<Bytes>

  let base: RPCWriter<RPCResponsePart<Bytes>>.Closable
  let loops: [any EventLoop]
  /// Bytes and messages written since the last round trip.
  private let unpaced = NIOLockedValueBox((bytes: 0, messages: 0))

  init(base: RPCWriter<RPCResponsePart<Bytes>>.Closable, loops: [any EventLoop]) {
    self.base = base
    self.loops = loops
  }

  func write(_ element: Element) async throws {
    try await self.base.write(element)
    guard case .message(let message) = element else { return }
    let due = self.unpaced.withLockedValue { unpaced -> Bool in
      unpaced.bytes += message.count
      unpaced.messages += 1
      guard unpaced.bytes >= Pace.bytes || unpaced.messages >= Pace.messages else { return false }
      unpaced = (0, 0)
      return true
    }
    if due {
      for loop in self.loops { try await loop.submit {}.get() }
    }
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }

  func finish() async { await self.base.finish() }

  func finish(throwing error: any Error) async { await self.base.finish(throwing: error) }
}
