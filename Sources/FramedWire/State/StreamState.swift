import DequeModule
import NIOCore

/// One message (or end-of-stream marker) waiting for flow-control credit.
package struct PendingSend: Sendable, Equatable {
  package enum Kind: Sendable, Equatable {
    /// A message none of which is written yet; fragmented lazily to whatever credit allows.
    case message(ByteBuffer, compressed: Bool, endStream: Bool)
    /// The rest of a message whose first fragments are written: nothing else of the stream
    /// (TRAILERS included) can go before it, so abandoning the call needs RST.
    case remainder(ByteBuffer, compressed: Bool, endStream: Bool)
    /// A bare client half-close (NO_MESSAGE | END_STREAM).
    case halfClose
    /// Server trailers (already encoded); closes the stream once written.
    case trailers(ByteBuffer)
  }
  package var kind: Kind

  package init(_ kind: Kind) { self.kind = kind }

  /// Whether writing this closes our half of the stream.
  var closesLocal: Bool {
    switch self.kind {
    case .message(_, _, let endStream), .remainder(_, _, let endStream): return endStream
    case .halfClose, .trailers: return true
    }
  }
}

/// Whether the response HEADERS went out (server) or came in (client).
package enum HeadersExchange: Sendable, Equatable {
  case pending
  case done
}

/// Where a stream is in its life (docs/protocol.md §8.2). Each half closes once, and only
/// what is valid in a phase is stored in it: after both halves closed, whether HEADERS were
/// exchanged no longer matters.
package enum StreamPhase: Sendable, Equatable {
  /// Both halves open.
  case open(HeadersExchange)
  /// Our half is closed (END_STREAM or TRAILERS queued); the peer may still send.
  case localClosed(HeadersExchange)
  /// The peer's half is closed (its END_STREAM arrived); we may still send.
  case remoteClosed(HeadersExchange)
  /// Both halves closed: what is queued still leaves, then the stream is gone.
  case closed

  package var isLocalClosed: Bool {
    switch self {
    case .localClosed, .closed: return true
    case .open, .remoteClosed: return false
    }
  }

  package var isRemoteClosed: Bool {
    switch self {
    case .remoteClosed, .closed: return true
    case .open, .localClosed: return false
    }
  }

  package var headers: HeadersExchange? {
    switch self {
    case .open(let h), .localClosed(let h), .remoteClosed(let h): return h
    case .closed: return nil
    }
  }

  /// Our END_STREAM or TRAILERS is queued.
  mutating func closeLocal() {
    switch self {
    case .open(let h): self = .localClosed(h)
    case .remoteClosed: self = .closed
    case .localClosed, .closed: break
    }
  }

  /// The peer's END_STREAM arrived.
  mutating func closeRemote() {
    switch self {
    case .open(let h): self = .remoteClosed(h)
    case .localClosed: self = .closed
    case .remoteClosed, .closed: break
    }
  }

  /// Response HEADERS went out (server) or came in (client).
  mutating func exchangeHeaders() {
    switch self {
    case .open: self = .open(.done)
    case .localClosed: self = .localClosed(.done)
    case .remoteClosed: self = .remoteClosed(.done)
    case .closed: break
    }
  }
}

/// Per-stream protocol state: its phase, both windows, reassembly and the send queue.
/// No I/O; owned by `ConnectionStateMachine`.
package struct StreamState: Sendable {
  package let id: UInt32
  package internal(set) var phase: StreamPhase = .open(.pending)
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
  /// Scheduler bookkeeping, not protocol state: the stream is in the connection's
  /// ready-to-send rotation (so it is listed there once).
  var scheduled = false

  package init(id: UInt32, sendWindow: Int, receiveWindow: Int, maxMessageSize: Int) {
    self.id = id
    self.sendWindow = sendWindow
    self.receiveWindow = ReceiveWindow(initial: receiveWindow)
    self.assembler = MessageAssembler(maxMessageSize: maxMessageSize)
  }

  /// A message is partly written: TRAILERS can't follow until it is done.
  package var midMessage: Bool {
    if case .remainder = self.pending.first?.kind { return true }
    return false
  }

  /// Both halves closed and nothing left to write.
  var isDone: Bool { self.phase == .closed && self.pending.isEmpty }
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
