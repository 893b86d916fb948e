import GRPCCore
import GRPCProtobuf

/// Collects field violations and turns them into one INVALID_ARGUMENT error carrying a
/// `google.rpc.BadRequest` detail — the shared shape of every validation failure.
///
/// Fields are named by their full path (AIP-193): nested messages with `.`, repeated
/// elements with `[i]`. `at(_:index:_:)` scopes the fields added inside it, so a rule
/// for a nested message names only its own fields:
///
/// ```swift
/// violations.at("quiz") { quiz in
///   quiz.at("questions", index: 3) { question in
///     question.at("choices", index: 1) { $0.require(!text.isEmpty, "text", "is required") }
///   }
/// }
/// // field: "quiz.questions[3].choices[1].text"
/// ```
public struct FieldViolations: Sendable, Hashable {
  public private(set) var violations: [ErrorDetails.BadRequest.FieldViolation] = []
  /// The path of the message being checked ("" at the request itself).
  public private(set) var scope = ""

  public init() {}

  /// Adds a violation of `field`, relative to the current scope ("" names the scope itself,
  /// e.g. a repeated element).
  public mutating func add(_ field: String, _ description: String) {
    self.violations.append(.init(field: self.path(field), description: description))
  }

  /// Adds a violation when `condition` is false.
  public mutating func require(_ condition: Bool, _ field: String, _ description: @autoclosure () -> String) {
    if !condition { self.add(field, description()) }
  }

  /// Runs `body` scoped to `field` (element `index` of it when repeated): what it adds is
  /// reported under `field.` / `field[index].`.
  public mutating func at(_ field: String, index: Int? = nil, _ body: (inout FieldViolations) throws -> Void) rethrows {
    let outer = self.scope
    self.scope = self.path(field, index: index)
    defer { self.scope = outer }
    try body(&self)
  }

  /// Runs `body` for each element of a repeated field, scoped to `field[i]`.
  public mutating func each<Elements: Sequence>(
    _ field: String, _ elements: Elements, _ body: (inout FieldViolations, Elements.Element) throws -> Void
  ) rethrows {
    for (index, element) in elements.enumerated() {
      try self.at(field, index: index) { try body(&$0, element) }
    }
  }

  /// The full path of `field` (element `index` when given) in the current scope.
  public func path(_ field: String, index: Int? = nil) -> String {
    var path = self.scope
    if !field.isEmpty { path += path.isEmpty ? field : "." + field }
    if let index { path += "[\(index)]" }
    return path
  }

  public var isEmpty: Bool { self.violations.isEmpty }

  /// How many bytes of violations the error carries, and of them its message. The status
  /// travels in the call's trailers, which a peer caps (16 KiB on our wire, MAX_HEADER_LIST_SIZE):
  /// a request with hundreds of mistakes would otherwise turn its 400 into an INTERNAL "trailers
  /// too large" — and trip the caller's circuit breaker. Found by schemathesis (GatewayTests).
  public static let detailBudget = 6 * 1024
  public static let messageBudget = 1024
  /// One violation's field path and description are cut to this many characters in the error.
  static let violationLimit = 300

  /// The error for these violations: "invalid request: field: description; …", with as many
  /// violations as fit the budgets (the first ones; "… and N more" says what was left out).
  public func error(message: String? = nil) -> RPCError {
    var reported: [ErrorDetails.BadRequest.FieldViolation] = []
    var size = 0
    for violation in self.violations {
      let cut = ErrorDetails.BadRequest.FieldViolation(
        field: String(violation.field.prefix(Self.violationLimit)), description: String(violation.violationDescription.prefix(Self.violationLimit)))
      size += cut.field.utf8.count + cut.violationDescription.utf8.count + 8
      guard size <= Self.detailBudget else { break }
      reported.append(cut)
    }
    var summary = "invalid request: "
    var listed = 0
    for violation in reported {
      let part = (listed == 0 ? "" : "; ") + "\(violation.field): \(violation.violationDescription)"
      guard summary.utf8.count + part.utf8.count <= Self.messageBudget else { break }
      summary += part
      listed += 1
    }
    if listed < self.violations.count { summary += " … and \(self.violations.count - listed) more" }
    return RPCError(GoogleRPCStatus(code: .invalidArgument, message: message ?? summary, details: [.badRequest(violations: reported)]))
  }

  /// Throws INVALID_ARGUMENT when there is any violation.
  public func check() throws(RPCError) {
    if !self.isEmpty { throw self.error() }
  }
}

/// A request message that can check itself. The validation interceptor calls it on every
/// inbound message, so handlers only see valid input. Rules here are pure (no database, no
/// secrets): what needs either stays in the handler.
public protocol ValidatableMessage {
  func validate(into violations: inout FieldViolations)
}

extension ValidatableMessage {
  /// This message's violations (empty when valid).
  public var fieldViolations: FieldViolations {
    var violations = FieldViolations()
    self.validate(into: &violations)
    return violations
  }
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
        try validatable.fieldViolations.check()
      }
      return message
    }
    request.messages = RPCAsyncSequence(wrapping: messages)
    return try await next(request, context)
  }
}
