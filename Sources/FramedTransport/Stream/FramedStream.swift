import DequeModule
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore

/// The state one call shares between its connection's event loop and the tasks running it:
/// the inbound buffer the call reads from and the outbound byte count that applies
/// back-pressure to its writer. One lock, held for a few instructions per operation.
final class FramedStream<Inbound: Sendable>: Sendable {
  private struct State {
    var buffer: Deque<(Inbound, credit: Int)> = []
    var reader: UnsafeContinuation<Inbound?, any Error>?
    var finished = false
    /// Set once the call failed or was reset; readers and writers then throw it.
    var error: RPCError?
    /// Credit consumed by the reader and not yet handed back to the connection.
    var unreportedCredit = 0
    /// Cost (`WriteBudget`) of the output queued on the connection and not yet written.
    var queuedBytes = 0
    /// `fail` handed `queuedBytes` back to the connection's budget: later `sent` are not counted.
    var released = false
    /// The epoch of the last `.wait` admission; the connection lists the stream until it
    /// resumes it with a later one (`resumedEpoch`).
    var listedAt: UInt64?
    var resumedEpoch: UInt64 = 0
    /// The current write waits for the connection's queue (see `WriteBudget.Admission.wait`).
    var connectionBlocked = false
    /// Cost of the message queued last: output beyond it is what a blocked writer waits for.
    var lastCost = 0
    var writer: UnsafeContinuation<Void, any Error>?
    /// Loop-assigned stream id (client streams get theirs when HEADERS go out).
    var streamID: UInt32 = 0
    /// Server: how to cancel the handler. Set once the handler task started.
    var cancellation: ServerContext.RPCCancellationHandle?
    var task: Task<Void, Never>?
    var cancelRequested = false
    /// Report consumed credit as soon as the reader catches up (the connection is holding
    /// fragment credit until it does); otherwise credit goes back in batches.
    var promptCredit = false
    /// Client: the status code the trailers carried.
    var statusCode: Status.Code?
    /// A sink's stream: the end (or failure) was delivered.
    var sinkEnded = false
  }

  /// What a stream read by callback (`sink`) is told, on the connection's loop.
  enum SinkEvent {
    case element(Inbound)
    /// No more elements (after the last one).
    case end
    case failure(RPCError)
  }

  // Unsafe (not checked) continuations on this hot path: each one is stored in `State` under
  // the lock and taken out (set to nil) under the lock before it is resumed, so it is resumed
  // exactly once; the checked variant would cost an allocation per message.
  private let state = NIOLockedValueBox(State())
  /// Hands consumed credit back to the connection (batched by `creditThreshold`).
  let connection: ConnectionCommands
  let creditThreshold: Int
  /// Output (its `WriteBudget` cost) a writer may have queued on this stream before it waits.
  let writeLimit: Int
  /// Set for a stream read by callback rather than `next()` (`FramedClientTransport.watch`):
  /// each element goes to it as it arrives, its credit straight back to the connection (the
  /// sink must take it at once), then exactly one `.end` or `.failure`. No task waits.
  let sink: (@Sendable (SinkEvent) -> Void)?

  init(connection: ConnectionCommands, creditThreshold: Int, writeLimit: Int, sink: (@Sendable (SinkEvent) -> Void)? = nil) {
    self.connection = connection
    self.creditThreshold = creditThreshold
    self.writeLimit = writeLimit
    self.sink = sink
  }

  var streamID: UInt32 {
    get { self.state.withLockedValue { $0.streamID } }
    set { self.state.withLockedValue { $0.streamID = newValue } }
  }

  var failure: RPCError? { self.state.withLockedValue { $0.error } }

  /// Client: the status the server ended the call with, once trailers arrived.
  var statusCode: Status.Code? {
    get { self.state.withLockedValue { $0.statusCode } }
    set { self.state.withLockedValue { $0.statusCode = newValue } }
  }

  /// The inbound side ended (trailers arrived) or the call failed.
  var isComplete: Bool { self.state.withLockedValue { $0.finished || $0.error != nil } }

  // MARK: Event-loop side

  @_specialize(where Inbound == RPCRequestPart<FramedBytes>)
  @_specialize(where Inbound == RPCResponsePart<FramedBytes>)
  func push(_ element: Inbound, credit: Int) {
    if let sink = self.sink {
      let report: Int? = self.state.withLockedValue { s in
        guard !s.finished, s.error == nil else { return nil }
        s.unreportedCredit += credit
        return self.takeCredit(&s)
      }
      guard let report else { return }
      sink(.element(element))
      if report > 0 { self.connection.returnCredit(self, report) }
      return
    }
    let reader: UnsafeContinuation<Inbound?, any Error>? = self.state.withLockedValue { s in
      guard !s.finished, s.error == nil else { return nil }
      if let r = s.reader {
        s.reader = nil
        s.unreportedCredit += credit
        return r
      }
      s.buffer.append((element, credit))
      return nil
    }
    reader?.resume(returning: element)
  }

  /// No more inbound elements; the reader sees the end after the buffered ones.
  @_specialize(where Inbound == RPCRequestPart<FramedBytes>)
  @_specialize(where Inbound == RPCResponsePart<FramedBytes>)
  func finish() {
    if let sink = self.sink {
      let deliver = self.state.withLockedValue { s -> Bool in
        s.finished = true
        guard !s.sinkEnded else { return false }
        s.sinkEnded = true
        return true
      }
      if deliver { sink(.end) }
      return
    }
    let reader: UnsafeContinuation<Inbound?, any Error>? = self.state.withLockedValue { s in
      s.finished = true
      guard s.buffer.isEmpty, let r = s.reader else { return nil }
      s.reader = nil
      return r
    }
    reader?.resume(returning: nil)
  }

  /// Fails the call: buffered input is dropped, the reader and writer throw `error`, and a
  /// server handler is cancelled.
  func fail(_ error: RPCError) {
    let (reader, writer, handle, task, queued, toSink) = self.state.withLockedValue { s in
      if s.error == nil { s.error = error }
      s.buffer.removeAll()
      let r = s.reader, w = s.writer
      s.reader = nil
      s.writer = nil
      s.cancelRequested = true
      // A sink hears of the first failure only, and nothing after its end.
      let toSink = self.sink != nil && !s.sinkEnded ? s.error : nil
      s.sinkEnded = true
      return (r, w, s.cancellation, s.task, Self.takeQueued(&s), toSink)
    }
    self.connection.release(queued)
    if let toSink { self.sink?(.failure(toSink)) }
    reader?.resume(throwing: error)
    writer?.resume(throwing: error)
    handle?.cancel()
    task?.cancel()
  }

  /// The connection dropped this stream's queued output (or will): stop counting it against
  /// the connection's budget, and anything written from now on too.
  func releaseQueued() {
    self.connection.release(self.state.withLockedValue { Self.takeQueued(&$0) })
  }

  /// What `releaseQueued` releases; exactly once per stream.
  private static func takeQueued(_ s: inout State) -> Int {
    defer {
      s.released = true
      s.queuedBytes = 0
    }
    return s.released ? 0 : s.queuedBytes
  }

  /// `bytes` of our queued output left for the socket (or were dropped); see `StreamHandle`.
  @discardableResult
  func sent(_ bytes: Int) -> Int {
    let (writer, counted): (UnsafeContinuation<Void, any Error>?, Int) = self.state.withLockedValue { s in
      guard !s.released else { return (nil, 0) }
      s.queuedBytes -= bytes
      return (self.takeWriterIfFree(&s), bytes)
    }
    writer?.resume()
    return counted
  }

  func connectionResumed(epoch: UInt64) {
    let writer: UnsafeContinuation<Void, any Error>? = self.state.withLockedValue { s in
      s.resumedEpoch = max(s.resumedEpoch, epoch)
      return self.takeWriterIfFree(&s)
    }
    writer?.resume()
  }

  /// The waiting writer, if it may go on now.
  private func takeWriterIfFree(_ s: inout State) -> UnsafeContinuation<Void, any Error>? {
    guard let w = s.writer, !self.mustWait(s) else { return nil }
    s.writer = nil
    s.connectionBlocked = false
    return w
  }

  private func mustWait(_ s: State) -> Bool {
    if s.queuedBytes >= self.writeLimit { return true }
    // Over the connection's budget: wait for it to drain, or until our earlier output left.
    return s.connectionBlocked && s.queuedBytes > s.lastCost && s.resumedEpoch <= (s.listedAt ?? 0)
  }

  /// See `State.promptCredit`.
  func requestPromptCredit() {
    let report: Int = self.state.withLockedValue { s in
      // The reader may already be waiting with unreported credit: hand it back now.
      if s.buffer.isEmpty && s.reader != nil && s.unreportedCredit > 0 {
        defer { s.unreportedCredit = 0 }
        return s.unreportedCredit
      }
      s.promptCredit = true
      return 0
    }
    if report > 0 { self.connection.returnCredit(self, report) }
  }

  // MARK: Server handler plumbing

  func attach(cancellation: ServerContext.RPCCancellationHandle) {
    let cancelNow = self.state.withLockedValue { s in
      s.cancellation = cancellation
      return s.cancelRequested
    }
    if cancelNow { cancellation.cancel() }
  }

  func attach(task: Task<Void, Never>) {
    let cancelNow = self.state.withLockedValue { s in
      s.task = task
      return s.cancelRequested
    }
    if cancelNow { task.cancel() }
  }

  func detachTask() {
    self.state.withLockedValue { s in
      s.task = nil
      s.cancellation = nil
    }
  }

  // MARK: Task side

  /// The next inbound element, `nil` at the end.
  @_specialize(where Inbound == RPCRequestPart<FramedBytes>)
  @_specialize(where Inbound == RPCResponsePart<FramedBytes>)
  func next() async throws -> Inbound? {
    let step: NextStep<Inbound> = self.state.withLockedValue { s in
      if let (e, c) = s.buffer.popFirst() {
        s.unreportedCredit += c
        return .element(e, credit: self.takeCredit(&s))
      }
      if let error = s.error { return .fail(error) }
      if s.finished { return .end }
      return .wait
    }
    switch step {
    case .element(let e, let credit):
      if credit > 0 { self.connection.returnCredit(self, credit) }
      return e
    case .end: return nil
    case .fail(let error): throw error
    case .wait: break
    }
    let element = try await withTaskCancellationHandler {
      try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<Inbound?, any Error>) in
        let immediate: Result<Inbound?, any Error>? = self.state.withLockedValue { s in
          if let (e, credit) = s.buffer.popFirst() {
            s.unreportedCredit += credit
            return .success(e)
          }
          if let error = s.error { return .failure(error) }
          if s.finished { return .success(nil) }
          // Cancelled before we got here: `onCancel` already ran and found no reader.
          if Task.isCancelled { return .failure(CancellationError()) }
          s.reader = c
          return nil
        }
        if let immediate { c.resume(with: immediate) }
      }
    } onCancel: {
      let reader = self.state.withLockedValue { s -> UnsafeContinuation<Inbound?, any Error>? in
        let r = s.reader
        s.reader = nil
        return r
      }
      reader?.resume(throwing: CancellationError())
    }
    let credit = self.state.withLockedValue { self.takeCredit(&$0) }
    if credit > 0 { self.connection.returnCredit(self, credit) }
    return element
  }

  private func takeCredit(_ s: inout State) -> Int {
    // Credit goes back in batches (a threshold well under half the window, so the peer never
    // stalls on it); when the connection holds fragment credit, as soon as the reader caught up.
    guard s.unreportedCredit >= self.creditThreshold || (s.promptCredit && s.buffer.isEmpty && s.unreportedCredit > 0) else { return 0 }
    defer {
      s.unreportedCredit = 0
      s.promptCredit = false
    }
    return s.unreportedCredit
  }

  /// Accounts `cost` bytes about to be queued; throws if the call already failed. Returns what
  /// to charge the connection (0 once released: the output is dropped uncounted) and the
  /// epoch at which the connection still lists this stream as waiting, if it does.
  func willQueue(_ cost: Int) throws -> (charge: Int, listedAt: UInt64?) {
    try self.state.withLockedValue { s in
      if let error = s.error { throw error }
      if s.released { return (0, nil) }
      s.queuedBytes += cost
      s.lastCost = cost
      guard let listed = s.listedAt, s.resumedEpoch <= listed else { return (cost, nil) }
      return (cost, listed)
    }
  }

  /// Waits while more than `writeLimit` bytes are queued on this stream (the peer reads it
  /// slowly) or, after a `.wait` admission, while the connection is over its budget (the peer
  /// reads nothing, or stalled streams fill it) and output queued before this message is too.
  func waitUntilWritable(_ admission: WriteBudget.Admission) async throws {
    let step: WriteStep = self.state.withLockedValue { s in
      if let error = s.error { return .fail(error) }
      if case .wait(let epoch) = admission {
        s.listedAt = epoch
        s.connectionBlocked = true
      }
      if self.mustWait(s) { return .wait }
      s.connectionBlocked = false
      return .go
    }
    switch step {
    case .go: return
    case .fail(let e): throw e
    case .wait: break
    }
    try await withTaskCancellationHandler {
      try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<Void, any Error>) in
        let immediate: Result<Void, any Error>? = self.state.withLockedValue { s in
          if let error = s.error { return .failure(error) }
          if !self.mustWait(s) {
            s.connectionBlocked = false
            return .success(())
          }
          if Task.isCancelled { return .failure(CancellationError()) }  // see next()
          s.writer = c
          return nil
        }
        if let immediate { c.resume(with: immediate) }
      }
    } onCancel: {
      let w = self.state.withLockedValue { s -> UnsafeContinuation<Void, any Error>? in
        let w = s.writer
        s.writer = nil
        s.connectionBlocked = false
        return w
      }
      w?.resume(throwing: CancellationError())
    }
  }
}

/// An `AsyncSequence` view of a stream's inbound side, as GRPCCore wants it.
struct FramedInbound<Element: Sendable>: AsyncSequence, Sendable {
  let stream: FramedStream<Element>

  struct AsyncIterator: AsyncIteratorProtocol {
    let stream: FramedStream<Element>
    @_specialize(where Element == RPCRequestPart<FramedBytes>)
    @_specialize(where Element == RPCResponsePart<FramedBytes>)
    mutating func next() async throws -> Element? { try await self.stream.next() }
  }

  func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self.stream) }
}

private enum NextStep<Element> {
  case element(Element, credit: Int)
  case end
  case fail(RPCError)
  case wait
}

private enum WriteStep {
  case go
  case fail(RPCError)
  case wait
}
