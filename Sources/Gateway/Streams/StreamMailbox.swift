import SwiftProtobuf
import Synchronization

/// Between a streaming RPC (and the heartbeat timer) and the HTTP body writer. It keeps only
/// the newest message: every leaderboard snapshot is the whole board, so a browser that reads
/// slower than the board changes skips versions instead of growing the gateway's memory. The
/// end of the RPC is kept apart, so it is never dropped for a newer message.
final class StreamMailbox: Sendable {
  enum Item {
    case message(any SwiftProtobuf.Message, id: Int64)
    case ping
    /// The RPC ended: nil when OK.
    case end((any Error)?)
  }

  private struct State {
    var latest: (message: any SwiftProtobuf.Message, id: Int64)?
    var ping = false
    var started = false
    var ended = false
    var failure: (any Error)?
  }

  private let state = Mutex(State())
  /// Wake-ups for the one reader; a wake-up stands for "look at the state", so one is enough.
  private let wakeups: AsyncStream<Void>
  private let wake: AsyncStream<Void>.Continuation

  init() {
    (self.wakeups, self.wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
  }

  func post(_ message: any SwiftProtobuf.Message, id: Int64) {
    self.state.withLock {
      $0.latest = (message, id)
      $0.started = true
    }
    self.wake.yield()
  }

  func ping() {
    self.state.withLock { $0.ping = true }
    self.wake.yield()
  }

  /// The first end wins: a shutdown's reason is not replaced by the cancelled RPC's.
  func close(_ failure: (any Error)?) {
    self.state.withLock {
      guard !$0.ended else { return }
      $0.ended = true
      $0.failure = failure
    }
    self.wake.yield()
  }

  /// Waits until the first message or the end: the HTTP status and headers depend on which.
  /// Returns the failure of an RPC that ended before any message.
  func waitForStart() async throws -> (any Error)? {
    var iterator = self.wakeups.makeAsyncIterator()
    while true {
      let (started, ended, failure) = self.state.withLock { ($0.started, $0.ended, $0.failure) }
      if started || ended { return started ? nil : failure }
      // nil: the caller went away (the task was cancelled).
      guard await iterator.next() != nil else { throw CancellationError() }
    }
  }

  /// What to write now, in order; empty when there is nothing yet.
  func take() -> [Item] {
    self.state.withLock { state in
      var items: [Item] = []
      if let latest = state.latest { items.append(.message(latest.message, id: latest.id)) }
      if state.ping { items.append(.ping) }
      if state.ended { items.append(.end(state.failure)) }
      state.latest = nil
      state.ping = false
      return items
    }
  }

  /// Waits for the next change; false when the reading task was cancelled.
  func next(_ iterator: inout AsyncStream<Void>.Iterator) async -> Bool { await iterator.next() != nil }

  func makeIterator() -> AsyncStream<Void>.Iterator { self.wakeups.makeAsyncIterator() }
}
