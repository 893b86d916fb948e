import FramedWire
import NIOCore

/// The write path: queued messages move to the socket only while the channel is writable, and
/// what they leave behind in the connection's budget is handed back once per write pass.
extension FramedConnectionHandler {
  /// Runs the send scheduler while the socket takes more, then writes and flushes once.
  /// Re-entrant calls (a write can fire `channelWritabilityChanged` synchronously) only mark
  /// that another pass is due, so the same bytes are never written twice.
  func flush() {
    guard let context = self.context else { return }
    if self.flushing {
      self.flushAgain = true
      return
    }
    self.flushing = true
    defer { self.flushing = false }
    repeat {
      self.flushAgain = false
      // Flow-control credit says what the peer may receive, writability what the socket takes
      // now: queued messages move to the socket only while both allow it.
      if context.channel.isWritable, self.machine.hasPendingSends {
        self.machine.writePending(into: &self.outbound, byteLimit: self.config.writeBatchBytes, events: &self.sendEvents)
        self.processSendEvents()
      } else if !context.channel.isWritable, self.peerStoppedReading(context) {
        return
      }
      guard self.outbound.readableBytes > 0 else { break }
      // Hand the buffer over and start a fresh one; once the socket took the bytes (usually
      // synchronously) the old storage is ours alone again and is reused without allocating.
      var out = ByteBuffer()
      swap(&out, &self.outbound)
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
      // Unwritable: the channel still holds `out`; writing into it again would copy it.
      if self.outbound.readableBytes == 0, context.channel.isWritable {
        out.clear()
        self.outbound = out
      }
    } while self.flushAgain || (self.machine.hasPendingSends && context.channel.isWritable && self.context != nil)
  }

  /// The channel stays unwritable while frames that no budget covers (PING ACKs, response
  /// HEADERS, TRAILERS) pile up behind it: the peer sends but never reads. Closes the connection.
  func peerStoppedReading(_ context: ChannelHandlerContext) -> Bool {
    let limit = self.config.maxQueuedBytes + self.config.writeBatchBytes + self.config.writeBufferWaterMark.high
    guard let buffered = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes),
      buffered + self.outbound.readableBytes > limit
    else { return false }
    self.closing = true
    self.tearDown(reason: "the peer stopped reading (over \(limit) bytes of output waiting)")
    context.close(promise: nil)
    return true
  }

  func processSendEvents() {
    guard !self.sendEvents.isEmpty else { return }
    var released = 0
    var i = 0
    while i < self.sendEvents.count {
      switch self.sendEvents[i] {
      case .sent(let id, let bytes):
        var cost = WriteBudget.cost(fragment: bytes)
        // A message's last fragment also returns its overhead, in the same call.
        if i + 1 < self.sendEvents.count, self.sendEvents[i + 1] == .messageDone(streamID: id) {
          cost += WriteBudget.messageOverhead
          i += 1
        }
        released += self.sent(cost, on: id)
      case .messageDone(let id):
        released += self.sent(WriteBudget.messageOverhead, on: id)
      case .closed(let id):
        self.inboundEncodings.removeValue(forKey: id)
        self.streamClosed(id: id)
      }
      i += 1
    }
    self.sendEvents.removeAll(keepingCapacity: true)
    // One budget update per write pass, not per frame.
    self.commands.release(released)
    self.closeIfDrained()
  }
}
