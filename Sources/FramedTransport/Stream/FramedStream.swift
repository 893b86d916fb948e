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
    /// Outbound message bytes queued on the connection and not yet written.
    var queuedBytes = 0
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
  }

  // Unsafe (not checked) continuations on this hot path: each one is stored in `State` under
  // the lock and taken out (set to nil) under the lock before it is resumed, so it is resumed
  // exactly once; the checked variant would cost an allocation per message.
  private let state = NIOLockedValueBox(State())
  /// Hands consumed credit back to the connection (batched by `creditThreshold`).
  let connection: ConnectionCommands
  let creditThreshold: Int
  /// Outbound bytes a writer may have queued before it waits.
  let writeLimit: Int

  init(connection: ConnectionCommands, creditThreshold: Int, writeLimit: Int) {
    self.connection = connection
    self.creditThreshold = creditThreshold
    self.writeLimit = writeLimit
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
    let (reader, writer, handle, task) = self.state.withLockedValue { s in
      if s.error == nil { s.error = error }
      s.buffer.removeAll()
      let r = s.reader, w = s.writer
      s.reader = nil
      s.writer = nil
      s.cancelRequested = true
      return (r, w, s.cancellation, s.task)
    }
    reader?.resume(throwing: error)
    writer?.resume(throwing: error)
    handle?.cancel()
    task?.cancel()
  }

  /// `bytes` of our queued output left for the socket.
  func sent(_ bytes: Int) {
    let writer: UnsafeContinuation<Void, any Error>? = self.state.withLockedValue { s in
      s.queuedBytes -= bytes
      guard s.queuedBytes < self.writeLimit, let w = s.writer else { return nil }
      s.writer = nil
      return w
    }
    writer?.resume()
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

  /// Accounts `bytes` about to be queued; throws if the call already failed.
  func willQueue(_ bytes: Int) throws {
    try self.state.withLockedValue { s in
      if let error = s.error { throw error }
      s.queuedBytes += bytes
    }
  }

  /// Waits while more than `writeLimit` bytes are queued (the peer reads slowly).
  func waitUntilWritable() async throws {
    let step: WriteStep = self.state.withLockedValue { s in
      if let error = s.error { return .fail(error) }
      return s.queuedBytes < self.writeLimit ? .go : .wait
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
          if s.queuedBytes < self.writeLimit { return .success(()) }
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
