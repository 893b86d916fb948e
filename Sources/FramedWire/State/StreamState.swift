import DequeModule
import NIOCore

/// One message (or end-of-stream marker) waiting for flow-control credit.
public struct PendingSend: Sendable {
  public enum Kind: Sendable {
    /// Message bytes still to send; fragmented lazily to whatever credit allows.
    case message(ByteBuffer, compressed: Bool, endStream: Bool)
    /// A bare client half-close (NO_MESSAGE | END_STREAM).
    case halfClose
    /// Server trailers (already encoded); closes the stream once written.
    case trailers(ByteBuffer)
  }
  public var kind: Kind
}

/// Per-stream protocol state: lifecycle flags, both windows, reassembly and the send queue.
/// No I/O; owned by `ConnectionStateMachine`.
public struct StreamState: Sendable {
  public let id: UInt32
  /// We sent END_STREAM (client) or TRAILERS (server).
  public var localClosed = false
  /// The peer sent END_STREAM (client to us) or TRAILERS (server to us).
  public var remoteClosed = false
  /// Server only: response HEADERS already sent. Client only: response HEADERS received.
  public var headersExchanged = false
  /// Credit we may still spend sending MESSAGE bytes on this stream.
  public var sendWindow: Int
  /// Credit the peer may still spend on this stream.
  public var receiveWindow: ReceiveWindow
  /// Fragments of the message being reassembled.
  public var assembler: MessageAssembler
  /// Messages and end markers waiting to be written, in order.
  public var pending: Deque<PendingSend> = []
  /// Credit of complete messages handed to the application and not yet reported consumed.
  public var unconsumedCredit = 0
  /// Fragment credit held back because complete messages are still unconsumed (so a stalled
  /// reader pins the sender at one window plus one message, docs/protocol.md §9).
  public var heldFragmentCredit = 0
  /// A message is partly written (its last fragment is still to go): TRAILERS can't follow
  /// until it is done, so abandoning the call must use RST instead.
  public var midMessage = false
  /// Whether the stream is in the connection's ready-to-send rotation.
  var scheduled = false

  public init(id: UInt32, sendWindow: Int, receiveWindow: Int, maxMessageSize: Int) {
    self.id = id
    self.sendWindow = sendWindow
    self.receiveWindow = ReceiveWindow(initial: receiveWindow)
    self.assembler = MessageAssembler(maxMessageSize: maxMessageSize)
  }
}

/// Reassembles a message split over MESSAGE frames (MORE flag) and enforces the size limit on
/// the compressed bytes as they arrive, so a peer cannot make us buffer more than the limit.
public struct MessageAssembler: Sendable {
  public let maxMessageSize: Int
  private var partial: ByteBuffer?
  private var partialCompressed = false

  public init(maxMessageSize: Int) { self.maxMessageSize = maxMessageSize }

  public enum Outcome: Sendable, Equatable {
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
  public var isAssembling: Bool { self.partial != nil }

  public mutating func append(_ payload: ByteBuffer, flags: FrameFlags) -> Outcome {
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
