import GRPCCore
import NIOConcurrencyHelpers
import ServiceContextModule

/// Who is calling: a user (JWT), one of the suite's own services, another OAuth client acting
/// for itself (both client-credentials JWTs) or an API key.
public struct Principal: Sendable, Hashable, CustomStringConvertible {
  public enum Kind: String, Sendable, Hashable {
    case user
    /// An internal client (quiz, scoring, gateway): the only kind `servicesOnly` admits.
    case service
    /// Any other OAuth client with a client-credentials token: authenticated, not trusted.
    case client
    case apiKey = "api_key"
  }
  public var kind: Kind
  /// `sub` for tokens, the key id for API keys. Never a credential.
  public var subject: String
  public var roles: Set<String>
  public var scopes: Set<String>
  /// A per-principal rate limit overriding the host default (API keys carry their own).
  public var rateLimit: RateLimit?
  /// The OAuth client acting on this user's behalf (a delegated token): it acts within its
  /// scopes and must not manage the user's account.
  public var delegatedClient: String?
  /// The user an API key belongs to (what it creates is theirs); nil for other kinds.
  public var keyOwner: String?

  public init(
    kind: Kind, subject: String, roles: Set<String> = [], scopes: Set<String> = [], rateLimit: RateLimit? = nil,
    delegatedClient: String? = nil, keyOwner: String? = nil
  ) {
    self.kind = kind
    self.subject = subject
    self.roles = roles
    self.scopes = scopes
    self.rateLimit = rateLimit
    self.delegatedClient = delegatedClient
    self.keyOwner = keyOwner
  }

  /// The user this principal acts for: a user token's subject (delegated or not), an API
  /// key's owner; nil for OAuth clients and the suite's services, which act for themselves.
  public var userID: String? {
    switch self.kind {
    case .user: self.subject
    case .apiKey: self.keyOwner
    case .client, .service: nil
    }
  }

  /// Whether the principal acts within granted scopes rather than with its roles: API keys,
  /// OAuth clients and tokens a client holds for a user. Plain sign-ins and the suite's
  /// services are not limited by scopes.
  public var actsWithinScopes: Bool {
    self.kind == .apiKey || self.kind == .client || self.delegatedClient != nil
  }

  /// True unless the principal acts within scopes and lacks `scope`.
  public func allows(scope: String) -> Bool {
    !self.actsWithinScopes || self.scopes.contains(scope)
  }

  public var description: String { "\(self.kind.rawValue):\(self.subject)" }
}

/// What the interceptors learn about one call, shared between them: the outer ones (log,
/// metrics) report what the inner ones (auth) found out.
public final class CallInfo: Sendable {
  public let requestID: String
  public let method: MethodDescriptor
  public let peer: String
  private let state = NIOLockedValueBox<(principal: Principal?, deadline: ContinuousClock.Instant?)>((nil, nil))

  public init(requestID: String, method: MethodDescriptor, peer: String) {
    self.requestID = requestID
    self.method = method
    self.peer = peer
  }

  /// Set by the auth interceptor once the caller is known.
  public var principal: Principal? {
    get { self.state.withLockedValue { $0.principal } }
    set { self.state.withLockedValue { $0.principal = newValue } }
  }

  /// When the call must be done by; downstream calls get what remains.
  public var deadline: ContinuousClock.Instant? {
    get { self.state.withLockedValue { $0.deadline } }
    set { self.state.withLockedValue { $0.deadline = newValue } }
  }
}

private enum CallInfoKey: ServiceContextKey {
  typealias Value = CallInfo
  static var nameOverride: String? { "quizwire.call" }
}

extension ServiceContext {
  /// The current call's info, inside a handler or anything it calls.
  public var call: CallInfo? {
    get { self[CallInfoKey.self] }
    set { self[CallInfoKey.self] = newValue }
  }
}

extension Metadata {
  /// The first string value for `key`.
  func first(_ key: String) -> String? {
    for value in self[stringValues: key] { return value }
    return nil
  }
}
