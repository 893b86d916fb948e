import GRPCCore
import NIOConcurrencyHelpers

/// What a watch (`FramedClientTransport.watch`) hears, on its connection's event loop.
public enum FramedWatchEvent: Sendable {
  /// A response message, as it arrived (not yet deserialized).
  case message(FramedBytes)
  /// The call is over: nil when the server ended it OK, else its status (or the transport's
  /// failure) as an `RPCError`. Nothing follows.
  case ended(RPCError?)
}

/// An open watch. `cancel()` abandons it: the server's handler is told (a reset) and the
/// stream slot freed. Calling it again, or after the call ended, does nothing.
public final class FramedWatch: Sendable {
  private struct State {
    /// The status the trailers carried, until the end is delivered.
    var status: RPCError?? = nil
    var ended = false
    /// Frees the call's slot (and resets an unfinished stream); dropped once run, which also
    /// breaks the stream → sink → watch → stream cycle.
    var release: (@Sendable () -> Void)?
  }
  private let state = NIOLockedValueBox(State())

  init() {}

  public func cancel() { self.end() }

  func configure(release: @escaping @Sendable () -> Void) {
    let endedAlready = self.state.withLockedValue { s in
      if !s.ended { s.release = release }
      return s.ended
    }
    if endedAlready { release() }
  }

  func received(status: RPCError?) { self.state.withLockedValue { $0.status = .some(status) } }

  /// The outcome to report for the stream's end: the status, or "no status" if none came.
  func outcomeAtEnd() -> RPCError? {
    let status = self.state.withLockedValue { $0.status }
    guard let status else { return RPCError(code: .unavailable, message: "the stream ended without a status") }
    return status
  }

  func end() {
    let release = self.state.withLockedValue { s -> (@Sendable () -> Void)? in
      s.ended = true
      defer { s.release = nil }
      return s.release
    }
    release?()
  }
}

extension FramedClientTransport {
  /// A server-streaming call that no task waits on: `onEvent` is called on the connection's
  /// event loop with each response message, then once with the end. It must return at once
  /// (hand the message over, don't process it there): the message's flow-control credit goes
  /// back to the server as soon as it returns, so a slow consumer has to drop or coalesce
  /// (a leaderboard keeps only the newest snapshot), not queue.
  ///
  /// For the thousands of long-lived, mostly idle watches a gateway holds: a task parked in a
  /// read keeps the slabs of every async frame it went through for as long as the call lasts
  /// (~5 KB per call through `withStream`). The call is otherwise the same as one through
  /// `withStream`: the replica chosen by the balancer and its breaker, a slot within the
  /// peer's stream limit, the outcome recorded for the breaker, a reset when abandoned.
  ///
  /// Returns once the request is sent. Throws only when no call could be started (no replica
  /// reachable, every breaker open, or the `callDeadline` passed waiting for a slot); every
  /// later failure arrives as `.ended(error)`.
  public func watch(
    descriptor: MethodDescriptor, metadata: Metadata, request: FramedBytes, onEvent: @escaping @Sendable (FramedWatchEvent) -> Void
  ) async throws -> FramedWatch {
    let (connection, replica) = try await self.pool.pick(waitForReady: false, deadline: Self.callDeadline)
    let peer = connection.status.peerSettings
    let encoding = peer.acceptEncodings.contains(self.config.compression.bit) ? self.config.compression : .identity
    let watch = FramedWatch()
    let stream = FramedStream<RPCResponsePart<FramedBytes>>(
      connection: connection.commands,
      creditThreshold: min(16 * 1024, self.config.connection.settings.initialStreamWindow / 4),
      writeLimit: min(max(64 * 1024, peer.initialStreamWindow), self.config.connection.maxQueuedBytes)
    ) { event in
      switch event {
      case .element(.metadata): break
      case .element(.message(let bytes)): onEvent(.message(bytes))
      case .element(.status(let status, let trailers)): watch.received(status: RPCError(status: status, metadata: trailers))
      case .end:
        onEvent(.ended(watch.outcomeAtEnd()))
        watch.end()
      case .failure(let error):
        onEvent(.ended(error))
        watch.end()
      }
    }
    watch.configure { [weak self] in self?.callEnded(stream, on: connection, replica: replica) }
    let writer = ClientStreamWriter(
      stream: stream, descriptor: descriptor, encoding: encoding, deadline: nil,
      sender: MessageSender(peerMaxMessageSize: peer.maxMessageSize, encoding: encoding, compressionMinBytes: self.config.connection.compressionMinBytes))
    do {
      try await writer.write(.metadata(metadata))
      try await writer.write(.message(request))
      await writer.finish()
    } catch {
      // Reported like any later failure (once: the stream tells its sink only the first).
      stream.fail((error as? RPCError) ?? RPCError(code: .unavailable, message: "the request could not be sent: \(error)"))
      watch.end()
    }
    return watch
  }
}
