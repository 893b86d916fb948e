import DequeModule
import NIOCore

/// One message (or end-of-stream marker) waiting for flow-control credit.
package struct PendingSend: Sendable {
  package enum Kind: Sendable {
    /// Message bytes still to send; fragmented lazily to whatever credit allows.
    case message(ByteBuffer, compressed: Bool, endStream: Bool)
    /// A bare client half-close (NO_MESSAGE | END_STREAM).
    case halfClose
    /// Server trailers (already encoded); closes the stream once written.
    case trailers(ByteBuffer)
  }
  package var kind: Kind
}

/// Per-stream protocol state: lifecycle flags, both windows, reassembly and the send queue.
/// No I/O; owned by `ConnectionStateMachine`.
package struct StreamState: Sendable {
  package let id: UInt32
  /// We sent END_STREAM (client) or TRAILERS (server).
  package var localClosed = false
  /// The peer sent END_STREAM (client to us) or TRAILERS (server to us).
  package var remoteClosed = false
  /// Server only: response HEADERS already sent. Client only: response HEADERS received.
  package var headersExchanged = false
  /// Credit we may still spend sending MESSAGE bytes on this stream.
  package var sendWindow: Int
  /// Credit the peer may still spend on this stream.
  package var receiveWindow: ReceiveWindow
  /// Fragments of the message being reassembled.
  package var assembler: MessageAssembler
  /// Messages and end markers waiting to be written, in order.
  package var pending: Deque<PendingSend> = []
  /// Credit of complete messages handed to the application and not yet reported consumed.
  package var unconsumedCredit = 0
  /// Fragment credit held back because complete messages are still unconsumed (so a stalled
  /// reader pins the sender at one window plus one message, docs/protocol.md §9).
  package var heldFragmentCredit = 0
  /// A message is partly written (its last fragment is still to go): TRAILERS can't follow
  /// until it is done, so abandoning the call must use RST instead.
  package var midMessage = false
  /// Whether the stream is in the connection's ready-to-send rotation.
  var scheduled = false

  package init(id: UInt32, sendWindow: Int, receiveWindow: Int, maxMessageSize: Int) {
    self.id = id
    self.sendWindow = sendWindow
    self.receiveWindow = ReceiveWindow(initial: receiveWindow)
    self.assembler = MessageAssembler(maxMessageSize: maxMessageSize)
  }
}

/// Reassembles a message split over MESSAGE frames (MORE flag) and enforces the size limit on
/// the compressed bytes as they arrive, so a peer cannot make us buffer more than the limit.
package struct MessageAssembler: Sendable {
  package let maxMessageSize: Int
  private var partial: ByteBuffer?
  private var partialCompressed = false

  package init(maxMessageSize: Int) { self.maxMessageSize = maxMessageSize }

  package enum Outcome: Sendable, Equatable {
    /// A fragment was stored; more follow.
    case incomplete
    /// A whole message.
    case message(ByteBuffer, compressed: Bool)
    /// The message grew past `maxMessageSize` (its bytes so far).
    case tooLarge(Int)
    /// COMPRESSED differs between fragments of one message.
    case inconsistentFlags
  }

  /// Whether a message is partially received.
  package var isAssembling: Bool { self.partial != nil }

  package mutating func append(_ payload: ByteBuffer, flags: FrameFlags) -> Outcome {
    let compressed = flags.contains(.compressed)
    let more = flags.contains(.more)
    if var buffer = self.partial {
      guard compressed == self.partialCompressed else {
        self.partial = nil
        return .inconsistentFlags
      }
      let size = buffer.readableBytes + payload.readableBytes
      guard size <= self.maxMessageSize else {
        self.partial = nil
        return .tooLarge(size)
      }
      self.partial = nil  // keep the buffer uniquely referenced while appending
      buffer.writeImmutableBuffer(payload)
      if more {
        self.partial = buffer
        return .incomplete
      }
      return .message(buffer, compressed: compressed)
    }
    guard payload.readableBytes <= self.maxMessageSize else { return .tooLarge(payload.readableBytes) }
    if more {
      // Copy so the fragment does not pin the whole read buffer while we wait for the rest.
      var buffer = ByteBufferAllocator().buffer(capacity: payload.readableBytes * 2)
      buffer.writeImmutableBuffer(payload)
      self.partial = buffer
      self.partialCompressed = compressed
      return .incomplete
    }
    return .message(payload, compressed: compressed)
  }
}
