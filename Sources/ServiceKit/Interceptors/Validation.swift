import GRPCCore
import GRPCProtobuf

/// Collects field violations and turns them into one INVALID_ARGUMENT error carrying a
/// `google.rpc.BadRequest` detail — the shared shape of every validation failure.
public struct FieldViolations: Sendable, Hashable {
  public private(set) var violations: [ErrorDetails.BadRequest.FieldViolation] = []

  public init() {}

  public mutating func add(_ field: String, _ description: String) {
    self.violations.append(.init(field: field, description: description))
  }

  /// Adds a violation when `condition` is false.
  public mutating func require(_ condition: Bool, _ field: String, _ description: @autoclosure () -> String) {
    if !condition { self.add(field, description()) }
  }

  public var isEmpty: Bool { self.violations.isEmpty }

  /// The error for these violations: "invalid request: field: description; …".
  public func error(message: String? = nil) -> RPCError {
    let summary = message ?? "invalid request: " + self.violations.map { "\($0.field): \($0.violationDescription)" }.joined(separator: "; ")
    return RPCError(GoogleRPCStatus(code: .invalidArgument, message: summary, details: [.badRequest(violations: self.violations)]))
  }

  /// Throws INVALID_ARGUMENT when there is any violation.
  public func check() throws(RPCError) {
    if !self.isEmpty { throw self.error() }
  }
}

/// A request message that can check itself. The validation interceptor calls it on every
/// inbound message, so handlers only see valid input.
public protocol ValidatableMessage {
  func validate(into violations: inout FieldViolations)
}

/// Rejects invalid request messages with INVALID_ARGUMENT + field violations before the
/// handler reads them.
public struct ValidationInterceptor: ServerInterceptor {
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard Input.self is any ValidatableMessage.Type else { return try await next(request, context) }
    var request = request
    let messages = request.messages.map { message -> Input in
      if let validatable = message as? any ValidatableMessage {
        var violations = FieldViolations()
        validatable.validate(into: &violations)
        try violations.check()
      }
      return message
    }
    request.messages = RPCAsyncSequence(wrapping: messages)
    return try await next(request, context)
  }
}
