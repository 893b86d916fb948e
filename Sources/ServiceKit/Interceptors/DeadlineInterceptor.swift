import FramedTransport
import GRPCCore
import NIOCore
import ServiceContextModule

/// Gives every call a deadline: the caller's (`grpc-timeout`) if it sent one, otherwise the
/// method's default. The handler is cancelled when it passes (DEADLINE_EXCEEDED), and the
/// remaining time is what downstream calls get (see `DeadlinePropagationInterceptor`).
public struct DeadlineInterceptor: ServerInterceptor {
  /// Default budget per method; `fallback` for methods not listed. Streaming methods that
  /// may stay open for long (watch, leaderboards) should be listed with a long budget.
  /// Keyed by "package.Service/Method" (descriptors also compare their RPC type).
  public var defaults: [String: Duration]
  public var fallback: Duration

  public init(fallback: Duration = .seconds(30), defaults: [MethodDescriptor: Duration] = [:]) {
    self.fallback = fallback
    self.defaults = Dictionary(defaults.map { ($0.key.fullyQualifiedMethod, $0.value) }, uniquingKeysWith: { _, new in new })
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let start = ContinuousClock.now
    if let transport = context.transportSpecific as? any DeadlineEnforcing {
      // The framed wire enforces a caller's deadline itself (and keeps it out of the
      // metadata), and the default with the same loop timer: no task per call.
      let deadline = transport.callerDeadline ?? start + self.defaultBudget(for: context.descriptor)
      ServiceContext.current?.call?.deadline = deadline
      if transport.callerDeadline == nil { transport.enforceDeadline(deadline) }
      return try await next(request, context)
    }
    let requested = request.metadata.first("grpc-timeout").flatMap(GRPCTimeout.parse)
    let deadline = start + (requested ?? self.defaultBudget(for: context.descriptor))
    ServiceContext.current?.call?.deadline = deadline
    // Elsewhere (HTTP/2) GRPCCore only flags the RPC cancelled at a caller's deadline, so
    // every deadline is enforced here.
    // The task group in DeadlineRunner awaits its children, so `next` never outlives this call.
    let response = try await withoutActuallyEscaping(next) { next in
      try await DeadlineRunner.run(until: deadline) { try await next(request, context) }
    }
    return response.mapProducer { producer in
      { writer in try await DeadlineRunner.run(until: deadline) { try await producer(writer) } }
    }
  }
}

extension DeadlineInterceptor {
  func defaultBudget(for method: MethodDescriptor) -> Duration { self.defaults[method.fullyQualifiedMethod] ?? self.fallback }
}

/// Runs an operation and cancels it at a deadline, failing with DEADLINE_EXCEEDED.
enum DeadlineRunner {
  static func run<T: Sendable>(until deadline: ContinuousClock.Instant, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await operation() }
      group.addTask {
        try await Task.sleep(until: deadline, clock: .continuous)
        return nil
      }
      defer { group.cancelAll() }
      guard let first = try await group.next() else { throw RPCError(code: .deadlineExceeded, message: "deadline exceeded") }
      guard let value = first else { throw RPCError(code: .deadlineExceeded, message: "deadline exceeded") }
      return value
    }
  }
}

/// gRPC's `grpc-timeout` text: up to 8 digits and a unit (H, M, S, m, u, n).
public enum GRPCTimeout {
  public static func parse(_ text: String) -> Duration? {
    guard let unit = text.last, (2...9).contains(text.count), text.dropLast().allSatisfy(\.isASCII), text.dropLast().allSatisfy(\.isNumber),
      let value = Int64(text.dropLast())
    else { return nil }
    switch unit {
    case "H": return .seconds(value * 3600)
    case "M": return .seconds(value * 60)
    case "S": return .seconds(value)
    case "m": return .milliseconds(value)
    case "u": return .microseconds(value)
    case "n": return .nanoseconds(value)
    default: return nil
    }
  }

  /// The shortest exact-enough encoding (microseconds, or a coarser unit past 8 digits).
  public static func format(_ duration: Duration) -> String {
    // At least 1 µs: "0u" would read as "no deadline" on the framed wire.
    let us = max(1, TimeAmount(duration).nanoseconds / 1_000)
    if us < 100_000_000 { return "\(us)u" }
    let ms = us / 1000
    if ms < 100_000_000 { return "\(ms)m" }
    return "\(min(ms / 1000, 99_999_999))S"
  }
}
