import GRPCCore

/// Who may call a method. Declared by each service next to its handlers.
public enum AccessPolicy: Sendable, Hashable {
  /// Anyone, credentials optional (a presented credential must still be valid).
  case `public`
  /// Any authenticated principal.
  case authenticated
  /// A principal holding at least one of these roles.
  case anyRole(Set<String>)
  /// The suite's own services only: client-credentials tokens of internal clients
  /// (`Principal.Kind.service`), never other OAuth clients.
  case servicesOnly
  /// The suite's services and signed-in people (their tokens, delegated or not, and their API
  /// keys); not OAuth clients acting for themselves.
  case servicesOrUsers
  /// Any authenticated principal; one that acts within scopes (an API key, an OAuth client, a
  /// token a client holds for a user) must also hold this scope (`quiz:write`).
  case scope(String)
}

/// The policies of one host's methods; methods not listed get `fallback`.
public struct AccessPolicies: Sendable {
  /// Keyed by "package.Service/Method": a descriptor's equality also compares its RPC type,
  /// which transports don't always know.
  public var byMethod: [String: AccessPolicy]
  public var fallback: AccessPolicy

  public init(_ byMethod: [MethodDescriptor: AccessPolicy] = [:], fallback: AccessPolicy = .authenticated) {
    self.byMethod = Dictionary(byMethod.map { ($0.key.fullyQualifiedMethod, $0.value) }, uniquingKeysWith: { _, new in new })
    self.fallback = fallback
  }

  public func policy(for method: MethodDescriptor) -> AccessPolicy {
    self.byMethod[method.fullyQualifiedMethod] ?? self.fallback
  }

  public mutating func merge(_ other: [MethodDescriptor: AccessPolicy]) {
    for (method, policy) in other { self.byMethod[method.fullyQualifiedMethod] = policy }
  }

  /// Decides a call: nil when allowed, otherwise the error to fail it with.
  /// UNAUTHENTICATED means "who are you?", PERMISSION_DENIED means "you may not".
  public static func decide(_ policy: AccessPolicy, principal: Principal?) -> RPCError? {
    switch policy {
    case .public:
      return nil
    case .authenticated:
      return principal == nil ? AuthFailure.missingCredentials.rpcError : nil
    case .anyRole(let roles):
      guard let principal else { return AuthFailure.missingCredentials.rpcError }
      return principal.roles.isDisjoint(with: roles)
        ? RPCError(code: .permissionDenied, message: "requires one of the roles: \(roles.sorted().joined(separator: ", "))")
        : nil
    case .servicesOnly:
      guard let principal else { return AuthFailure.missingCredentials.rpcError }
      return principal.kind == .service ? nil : RPCError(code: .permissionDenied, message: "only services may call this method")
    case .servicesOrUsers:
      guard let principal else { return AuthFailure.missingCredentials.rpcError }
      return principal.kind == .client
        ? RPCError(code: .permissionDenied, message: "only services and signed-in users may call this method") : nil
    case .scope(let scope):
      guard let principal else { return AuthFailure.missingCredentials.rpcError }
      return principal.allows(scope: scope) ? nil : RPCError(code: .permissionDenied, message: "requires the scope \(scope)")
    }
  }
}

/// Why a credential was refused. The message sent to the caller is deliberately coarse
/// (no hint which check failed beyond what a legitimate client needs to fix its call);
/// the precise reason goes to the log.
public enum AuthFailure: Error, Sendable, Hashable, CustomStringConvertible, RPCErrorConvertible {
  case missingCredentials
  case malformed(String)
  case wrongType(String?)
  case algorithmNotAllowed(String?)
  case unknownKey(String?)
  case badSignature
  case expired
  case notYetValid
  case wrongIssuer
  case wrongAudience
  case invalidAPIKey
  case keysUnavailable(String)

  public var description: String {
    switch self {
    case .missingCredentials: "no credentials"
    case .malformed(let why): "malformed token: \(why)"
    case .wrongType(let typ): "token typ \(typ ?? "missing") is not at+jwt"
    case .algorithmNotAllowed(let alg): "alg \(alg ?? "missing") not allowed"
    case .unknownKey(let kid): "unknown kid \(kid ?? "missing")"
    case .badSignature: "signature does not verify"
    case .expired: "token expired"
    case .notYetValid: "token not yet valid"
    case .wrongIssuer: "wrong issuer"
    case .wrongAudience: "wrong audience"
    case .invalidAPIKey: "invalid API key"
    case .keysUnavailable(let why): "verification keys unavailable: \(why)"
    }
  }

  public var rpcError: RPCError {
    switch self {
    case .missingCredentials: RPCError(code: .unauthenticated, message: "authentication required")
    case .expired: RPCError(code: .unauthenticated, message: "token expired")
    case .invalidAPIKey: RPCError(code: .unauthenticated, message: "invalid API key")
    case .keysUnavailable: RPCError(code: .unavailable, message: "cannot verify credentials right now")
    default: RPCError(code: .unauthenticated, message: "invalid token")
    }
  }

  // RPCErrorConvertible: the coarse answer above; the precise reason stays in `description`.
  public var rpcErrorCode: RPCError.Code { self.rpcError.code }
  public var rpcErrorMessage: String { self.rpcError.message }
}
