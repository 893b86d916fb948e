import DequeModule
import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore

/// What a call can ask of its connection. Streams are referenced by object because a client
/// stream has no id until its HEADERS go out on the event loop.
enum StreamCommand: Sendable {
  case open(any StreamHandle, headers: ByteBuffer, endStream: Bool)
  case responseHeaders(any StreamHandle, ByteBuffer)
  case message(any StreamHandle, ByteBuffer, compressed: Bool, endStream: Bool)
  case halfClose(any StreamHandle)
  case trailers(any StreamHandle, ByteBuffer)
  case reset(any StreamHandle, WireErrorCode)
  case credit(any StreamHandle, Int)
  /// Server: end the call with DEADLINE_EXCEEDED after this long, unless it already has a
  /// deadline (the caller's).
  case deadline(any StreamHandle, TimeAmount)
}

/// The loop-facing side of a stream, independent of its inbound element type.
protocol StreamHandle: AnyObject, Sendable {
  var streamID: UInt32 { get set }
  /// Output of this cost (`WriteBudget`) is no longer queued. Returns how many of them the
  /// connection's budget still counts (0 once the stream failed: `fail` released them all).
  @discardableResult func sent(_ bytes: Int) -> Int
  func fail(_ error: RPCError)
  /// The connection's queue drained below its resume mark (`epoch` as returned by
  /// `ConnectionCommands.sendMessage`, plus one).
  func connectionResumed(epoch: UInt64)
}

/// How much output a connection may hold in user space before its writers wait, in bytes of
/// memory: a queued message counts twice its size (its buffer was allocated in a power of two)
/// plus a fixed overhead (buffer header, command and queue entries), so a flood of tiny or
/// empty messages is bounded too.
enum WriteBudget {
  static let messageOverhead = 64

  @inline(__always) static func cost(message bytes: Int) -> Int { 2 * bytes + Self.messageOverhead }
  /// What a written fragment returns; the last one also returns `messageOverhead`.
  @inline(__always) static func cost(fragment bytes: Int) -> Int { 2 * bytes }

  /// What admitting a message means for its writer.
  enum Admission: Equatable {
    /// The connection is closed; nothing was queued.
    case closed
    case go
    /// The connection is over its budget. The writer may go on only if this message is all
    /// its stream has queued (a unary or ping-pong writer never waits, and a stream the peer
    /// stalled can't block the others forever); else it waits until its earlier output left
    /// or the connection resumes it with a later epoch.
    case wait(epoch: UInt64)
  }
}

extension StreamCommand {
  var stream: any StreamHandle {
    switch self {
    case .open(let s, _, _), .responseHeaders(let s, _), .message(let s, _, _, _), .halfClose(let s),
      .trailers(let s, _), .reset(let s, _), .credit(let s, _), .deadline(let s, _):
      return s
    }
  }
}

extension FramedStream: StreamHandle {}

/// Hands commands from call tasks to the connection's event loop in batches: the first command
/// after a drain costs one `execute`; commands arriving meanwhile ride along. This keeps the
/// hot path at one task hop per batch instead of one per frame.
final class ConnectionCommands: Sendable {
  private struct State {
    var queue: Deque<StreamCommand> = []
    var drainScheduled = false
    var closed = false
    /// Output queued in user space: admitted by `sendMessage`, not yet handed to the socket.
    var queuedBytes = 0
    var budget = FramedConnectionConfig().maxQueuedBytes
    /// Streams whose writers wait for the queue to drain, each at most once per epoch.
    var blocked: [any StreamHandle] = []
    /// Bumped each time the blocked writers are resumed.
    var epoch: UInt64 = 0
    var peakQueuedBytes = 0
  }
  private let state = NIOLockedValueBox(State())
  let eventLoop: any EventLoop
  /// Runs on the loop with the batch; set once by the handler when it is added.
  ///
  /// The closure is wrapped in a struct on purpose: a bare closure stored in a generic box is
  /// kept in its most general representation, and every `inout` access through
  /// `withLockedValue` wrapped it in two more reabstraction thunks — each drain made the next
  /// one slower, without bound (seen in a profile as a thunk chain deeper than 30 frames).
  private struct Sink: Sendable {
    let perform: @Sendable (Deque<StreamCommand>) -> Void
  }
  private let sink: NIOLockedValueBox<Sink?> = NIOLockedValueBox(nil)

  init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

  func setSink(_ sink: @escaping @Sendable (Deque<StreamCommand>) -> Void) {
    self.sink.withLockedValue { $0 = Sink(perform: sink) }
  }

  /// Queues a command; `false` once the connection has closed.
  @discardableResult
  func send(_ command: StreamCommand) -> Bool {
    let (accepted, schedule) = self.state.withLockedValue { s -> (Bool, Bool) in
      guard !s.closed else { return (false, false) }
      s.queue.append(command)
      guard !s.drainScheduled else { return (true, false) }
      s.drainScheduled = true
      return (true, true)
    }
    if schedule {
      self.eventLoop.execute { self.drain() }
    }
    return accepted
  }

  /// Sets the connection's user-space output budget (`FramedConnectionConfig.maxQueuedBytes`).
  func setBudget(_ bytes: Int) {
    self.state.withLockedValue { $0.budget = bytes }
  }

  /// Output queued in user space now (for tests and diagnostics).
  var queuedBytes: Int { self.state.withLockedValue { $0.queuedBytes } }
  /// The most output this connection ever had queued.
  var peakQueuedBytes: Int { self.state.withLockedValue { $0.peakQueuedBytes } }

  /// Queues a `.message` command that costs `cost` bytes of the connection's budget (under
  /// the same lock as the queue: nothing extra on the hot path). `listedAt` is the epoch of
  /// the stream's last `.wait` if it was not resumed since, so a stream is listed once.
  func sendMessage(_ command: StreamCommand, cost: Int, listedAt: UInt64?) -> WriteBudget.Admission {
    let (admission, schedule) = self.state.withLockedValue { s -> (WriteBudget.Admission, Bool) in
      guard !s.closed else { return (.closed, false) }
      s.queue.append(command)
      s.queuedBytes += cost
      var admission = WriteBudget.Admission.go
      s.peakQueuedBytes = max(s.peakQueuedBytes, s.queuedBytes)
      if s.queuedBytes > s.budget {
        if listedAt != s.epoch { s.blocked.append(command.stream) }
        admission = .wait(epoch: s.epoch)
      }
      guard !s.drainScheduled else { return (admission, false) }
      s.drainScheduled = true
      return (admission, true)
    }
    if schedule {
      self.eventLoop.execute { self.drain() }
    }
    return admission
  }

  /// `bytes` of admitted output left user space (written to the socket or dropped). Once the
  /// queue is down to half the budget, waiting writers resume — not at the first byte below
  /// it, so they resume in batches rather than one wake-up per frame.
  func release(_ bytes: Int) {
    guard bytes != 0 else { return }
    let (resume, epoch) = self.state.withLockedValue { s -> ([any StreamHandle], UInt64) in
      guard !s.closed else { return ([], 0) }
      s.queuedBytes -= bytes
      guard !s.blocked.isEmpty, s.queuedBytes <= s.budget / 2 else { return ([], 0) }
      return Self.takeBlocked(&s)
    }
    for stream in resume { stream.connectionResumed(epoch: epoch) }
  }

  private static func takeBlocked(_ s: inout State) -> ([any StreamHandle], UInt64) {
    s.epoch &+= 1
    defer { s.blocked = [] }
    return (s.blocked, s.epoch)
  }

  func returnCredit(_ stream: any StreamHandle, _ credit: Int) {
    self.send(.credit(stream, credit))
  }

  private func drain() {
    let batch = self.state.withLockedValue { s -> Deque<StreamCommand> in
      s.drainScheduled = false
      let batch = s.queue
      s.queue = []
      return batch
    }
    guard !batch.isEmpty, let sink = self.sink.withLockedValue({ $0 }) else { return }
    sink.perform(batch)
  }

  /// The connection is gone: refuse further commands. Returns the ones that never ran, so
  /// their calls can be failed (a call whose HEADERS never went out would otherwise wait forever).
  func close() -> [StreamCommand] {
    let (dropped, resume, epoch) = self.state.withLockedValue { s -> ([StreamCommand], [any StreamHandle], UInt64) in
      s.closed = true
      s.queuedBytes = 0
      defer { s.queue.removeAll() }
      let (resume, epoch) = Self.takeBlocked(&s)
      return (Array(s.queue), resume, epoch)
    }
    self.sink.withLockedValue { $0 = nil }
    // Their next write finds the connection closed (or their stream already failed).
    for stream in resume { stream.connectionResumed(epoch: epoch) }
    return dropped
  }
}
