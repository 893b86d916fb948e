import FramedTransport
import GRPCCore
import Logging
import QuizwireProtos
import ServiceLifecycle

/// How a service that depends on auth reaches it, from configuration alone.
public struct RemoteAuthConfig: Sendable {
  /// The keys it reads.
  public static let keys: [ConfigKey] = [
    ConfigKey("auth-target", "The auth service's framed address(es): host:port[,host:port]."),
    ConfigKey("client-id", "This service's internal OAuth client (default: the service's name)."),
    ConfigKey("client-secret", "That client's secret.", kind: .secret),
    ConfigKey("auth-issuer", "Expected token issuer (default quizwire-auth)."),
    ConfigKey("auth-audience", "Expected token audience (default quizwire)."),
  ]

  public var targets: [String]
  public var clientID: String
  public var clientSecret: Secret
  public var issuer = "quizwire-auth"
  public var audience = "quizwire"
  /// How often an unknown `kid` may trigger a JWKS refresh.
  public var jwksRefreshInterval: Duration = .seconds(10)

  public init(targets: [String], clientID: String, clientSecret: Secret) {
    self.targets = targets
    self.clientID = clientID
    self.clientSecret = clientSecret
  }

  /// Fails naming `auth-target` or `client-secret` when they are missing.
  public init(layers: ConfigLayers, service: String) throws {
    guard let (text, _) = layers.raw("auth-target") else {
      throw ConfigError(
        key: "auth-target", origin: nil, reason: "required: \(service) verifies callers through the auth service (give --auth-target host:port[,host:port])")
    }
    let targets = try ServiceTargets.parse(text, key: "auth-target")
    guard let secret = try layers.secret("client-secret") else {
      throw ConfigError(
        key: "client-secret", origin: nil, reason: "required: set QUIZWIRE_CLIENT_SECRET or QUIZWIRE_CLIENT_SECRET_FILE (quizwire up does this itself)")
    }
    self.init(targets: targets, clientID: layers.string("client-id", default: service), clientSecret: secret)
    self.issuer = layers.string("auth-issuer", default: self.issuer)
    self.audience = layers.string("auth-audience", default: self.audience)
  }
}

/// Remote auth for a service: user tokens verified against the auth service's JWKS, API keys
/// checked through its `CheckAPIKey` (cached), and a client-credentials token of the
/// service's own for outgoing calls. Run `client` (a lifecycle service) while serving.
public struct RemoteAuth: Sendable {
  public let client: ServiceClient
  public let verifier: TokenVerifier
  public let apiKeys: CachedAPIKeyChecker
  public let credentials: ClientCredentialsToken

  public init(config: RemoteAuthConfig) throws {
    var clientConfig = ServiceClientConfig(replicas: config.targets)
    clientConfig.idempotentMethods = [
      Auth_V1_AuthService.Method.GetJWKS.descriptor, Auth_V1_AuthService.Method.CheckAPIKey.descriptor,
      Auth_V1_AuthService.Method.ClientCredentials.descriptor, Auth_V1_AuthService.Method.BatchGetUsers.descriptor,
    ]
    let client = try ServiceClient(clientConfig)
    self.client = client
    let auth = Auth_V1_AuthService.Client(wrapping: client.client)
    self.credentials = ClientCredentialsToken { [clientID = config.clientID, secret = config.clientSecret] in
      let answer = try await auth.clientCredentials(
        .with {
          $0.clientID = clientID
          $0.clientSecret = secret.reveal()
        })
      return (answer.accessToken, .seconds(answer.expiresIn))
    }
    var verifierConfig = TokenVerifier.Config(issuer: config.issuer, audience: config.audience)
    verifierConfig.refreshInterval = config.jwksRefreshInterval
    self.verifier = TokenVerifier(config: verifierConfig, source: AuthServiceJWKSSource(client: client.client))
    self.apiKeys = CachedAPIKeyChecker(AuthServiceAPIKeyChecker(client: client.client, token: { [credentials] in try await credentials.token() }))
  }

  public func security(policies: AccessPolicies) -> ServiceHost.Security {
    ServiceHost.Security(policies: policies, verifier: self.verifier, apiKeys: self.apiKeys)
  }
}

/// A client-credentials access token, fetched on first use, shared by concurrent callers,
/// and refreshed before it expires (at 80 % of its lifetime). Never logged.
public actor ClientCredentialsToken {
  public typealias Fetch = @Sendable () async throws -> (token: String, lifetime: Duration)
  private let fetch: Fetch
  private let clock = ContinuousClock()
  private var current: (token: String, refreshAt: ContinuousClock.Instant)?
  private var inFlight: Task<(token: String, lifetime: Duration), any Error>?

  public init(fetch: @escaping Fetch) { self.fetch = fetch }

  /// A token valid for a while yet.
  public func token() async throws -> String {
    if let current, self.clock.now < current.refreshAt { return current.token }
    let task: Task<(token: String, lifetime: Duration), any Error>
    if let inFlight {
      task = inFlight
    } else {
      task = Task { [fetch] in try await fetch() }
      self.inFlight = task
    }
    do {
      let fetched = try await task.value
      if self.inFlight == task {
        self.inFlight = nil
        self.current = (fetched.token, self.clock.now + fetched.lifetime * 0.8)
      }
      return fetched.token
    } catch {
      if self.inFlight == task { self.inFlight = nil }
      throw error
    }
  }

  /// Forgets the cached token (e.g. after an UNAUTHENTICATED answer).
  public func invalidate() { self.current = nil }
}

/// Adds this service's own bearer token to outgoing calls that carry no credential.
public struct BearerTokenInterceptor: ClientInterceptor {
  let credentials: ClientCredentialsToken
  public init(credentials: ClientCredentialsToken) { self.credentials = credentials }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>, context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    if request.metadata.first("authorization") == nil {
      request.metadata.addString("Bearer \(try await self.credentials.token())", forKey: "authorization")
    }
    return try await next(request, context)
  }
}

/// The auth service's JWKS over a client.
public struct AuthServiceJWKSSource<Transport: ClientTransport>: JWKSSource {
  let client: Auth_V1_AuthService.Client<Transport>
  public init(client: GRPCClient<Transport>) { self.client = Auth_V1_AuthService.Client(wrapping: client) }
  public func fetchJWKS() async throws -> String {
    // Its own timeout: the gateway's clients have no default one.
    var options = CallOptions.defaults
    options.timeout = .seconds(10)
    return try await self.client.getJWKS(.init(), options: options).jwksJson
  }
}

/// API keys checked through the auth service's CheckAPIKey, called with the service's own
/// client-credentials token. Wrap it in `CachedAPIKeyChecker`.
public struct AuthServiceAPIKeyChecker<Transport: ClientTransport>: APIKeyChecker {
  let client: Auth_V1_AuthService.Client<Transport>
  let token: @Sendable () async throws -> String

  public init(client: GRPCClient<Transport>, token: @escaping @Sendable () async throws -> String) {
    self.client = Auth_V1_AuthService.Client(wrapping: client)
    self.token = token
  }

  public func principal(forAPIKey key: String) async throws -> Principal? {
    let answer = try await self.client.checkAPIKey(.with { $0.key = key }, metadata: ["authorization": "Bearer \(try await self.token())"])
    guard answer.valid else { return nil }
    // A key acts with its scopes, not its owner's roles.
    return Principal(
      kind: .apiKey, subject: answer.keyID, roles: [], scopes: Set(answer.scopes),
      rateLimit: answer.rateLimitPerSecond > 0 ? RateLimit(perSecond: answer.rateLimitPerSecond, burst: max(1, answer.rateLimitPerSecond * 2)) : nil,
      keyOwner: answer.ownerID.isEmpty ? nil : answer.ownerID)
  }
}
