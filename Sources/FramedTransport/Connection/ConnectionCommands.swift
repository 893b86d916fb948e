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
  func sent(_ bytes: Int)
  func fail(_ error: RPCError)
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
    let dropped = self.state.withLockedValue { s -> [StreamCommand] in
      s.closed = true
      defer { s.queue.removeAll() }
      return Array(s.queue)
    }
    self.sink.withLockedValue { $0 = nil }
    return dropped
  }
}
