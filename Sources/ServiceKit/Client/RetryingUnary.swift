import FramedTransport
import GRPCCore

extension GRPCClient {
  /// A unary call within `deadline`, tried again under `retry` (an idempotent method's policy;
  /// nil: one attempt).
  ///
  /// Why not GRPCCore's retry executor (a `MethodConfig` retry policy): it runs every call of a
  /// method with one — the first attempt too — through broadcast sequences and a task per
  /// attempt, which was ~10 % of the gateway's CPU per request for a call that almost never
  /// fails. Here a call that succeeds costs one one-shot call, and only a failure pays for
  /// the loop. The rules are the same (`UnaryRetryPolicy`): the codes, the attempts, the
  /// backoff and the server's pushback.
  ///
  /// The deadline bounds the whole call, pauses included; the last attempt's error is the
  /// call's. Over the framed wire the transport enforces it (`FramedClientTransport
  /// .callDeadline`: one loop timer); over other transports each attempt runs with what is
  /// left of it as GRPCCore's `CallOptions.timeout`.
  public func unary<Request: Sendable, Response: Sendable>(
    request: ClientRequest<Request>,
    descriptor: MethodDescriptor,
    serializer: some MessageSerializer<Request>,
    deserializer: some MessageDeserializer<Response>,
    deadline: ContinuousClock.Instant,
    retry: UnaryRetryPolicy?
  ) async throws -> Response {
    let enforcedByTransport = Transport.self == FramedClientTransport.self
    var attempt = 1
    while true {
      var options = CallOptions.defaults
      if !enforcedByTransport { options.timeout = max(.zero, ContinuousClock.now.duration(to: deadline)) }
      do {
        return try await FramedClientTransport.$callDeadline.withValue(deadline) {
          try await self.unary(request: request, descriptor: descriptor, serializer: serializer, deserializer: deserializer, options: options) {
            try $0.message
          }
        }
      } catch let error as RPCError {
        guard let retry,
          let pause = retry.delay(
            afterAttempt: attempt, failedWith: error, remaining: ContinuousClock.now.duration(to: deadline), jitter: Double.random(in: 0..<1))
        else { throw error }
        try await Task.sleep(for: pause)
        attempt += 1
      }
    }
  }
}
