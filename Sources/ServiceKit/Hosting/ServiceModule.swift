import Synchronization
import GRPCCore
import Logging
import QuizwireProtos
import ServiceLifecycle
import Storage

/// One service of the suite, described once: its name, ports, configuration, migrations,
/// access policies, the services it calls and how it builds its handlers. `quizwire serve`,
/// `up`, `migrate` and `call` read everything they need from here (docs/services.md,
/// "Adding a service"); `ServiceAssembly` turns it into a running `ServiceHost`.
public protocol ServiceModule: Sendable {
  /// The service's own settings, read from configuration layers.
  associatedtype Options: ServiceOptions = NoOptions

  /// Short name on the command line and in file names: `quizwire serve <name>`.
  static var name: String { get }
  /// One line for `--help`.
  static var summary: String { get }
  /// The protobuf services it serves ("package.Service"); the first names the host (health,
  /// logs). Their methods come from `MethodCatalogue`.
  static var protoServices: [String] { get }
  /// Ports under `quizwire up` (framed / gRPC / admin).
  static var defaultPorts: ServicePorts { get }
  /// Other modules it calls, by name. `"auth"` gives the module remote token verification,
  /// API-key checks and a client-credentials token of its own (`--auth-target`).
  static var dependsOn: [String] { get }
  /// Its schema, applied before serving. Empty: the service has no database.
  static var migrations: [Migration] { get }
  /// Backfills run in batches after the schema steps (resumable; see `DataMigration`).
  static var dataMigrations: [DataMigration] { get }
  /// Who may call each method; methods not listed get the fallback.
  static var policies: AccessPolicies { get }
  /// Host defaults that differ for this service (deadlines, rate limit, handler placement).
  static func configureHost(_ config: inout ServiceHost.Config)
  /// Builds the handlers. Must not touch the database yet: migrations run in the host's
  /// before-serving step, after this returns; put database work in `ModuleParts.beforeServing`.
  static func make(_ context: ModuleContext<Options>) async throws -> ModuleParts
}

extension ServiceModule {
  public static var dependsOn: [String] { [] }
  public static var migrations: [Migration] { [] }
  public static var dataMigrations: [DataMigration] { [] }
  public static var policies: AccessPolicies { AccessPolicies(fallback: .authenticated) }
  public static func configureHost(_ config: inout ServiceHost.Config) {}
  /// Every method this module serves, from the generated catalogue.
  public static var methods: [CatalogueMethod] { protoServices.flatMap { MethodCatalogue.methods(of: $0) } }
}

/// A module's own settings. `init(layers:)` reads them (flags > environment > file >
/// defaults) and fails naming the key; `keys` lists them for `--help` and so that a key no
/// command reads is refused instead of ignored.
public protocol ServiceOptions: Sendable {
  static var keys: [ConfigKey] { get }
  init(layers: ConfigLayers) throws
}

/// For modules without settings of their own.
public struct NoOptions: ServiceOptions {
  public static var keys: [ConfigKey] { [] }
  public init(layers: ConfigLayers) throws {}
}

/// One configuration key a command reads.
public struct ConfigKey: Sendable, Hashable {
  public enum Kind: Sendable, Hashable {
    /// Takes a value: `--key value`.
    case value
    /// A switch: `--key` sets true, `--no-key` false.
    case toggle
    /// Only from `QUIZWIRE_<KEY>` or the file `QUIZWIRE_<KEY>_FILE` names; never a flag.
    case secret
  }
  /// kebab-case: `framed-port`, environment `QUIZWIRE_FRAMED_PORT`.
  public var name: String
  public var help: String
  public var kind: Kind

  public init(_ name: String, _ help: String, kind: Kind = .value) {
    self.name = name
    self.help = help
    self.kind = kind
  }
}

/// Framed, gRPC/HTTP2 and admin ports.
public struct ServicePorts: Sendable, Hashable {
  public var framed: Int
  public var grpc: Int
  public var admin: Int
  public init(framed: Int, grpc: Int, admin: Int) {
    self.framed = framed
    self.grpc = grpc
    self.admin = admin
  }
}

/// What a module gets to build its handlers from.
public struct ModuleContext<Options: ServiceOptions>: Sendable {
  public let options: Options
  public let layers: ConfigLayers
  public let host: ServiceHost.Config
  /// Open but not yet migrated (migrations run before serving); nil without migrations.
  public let database: Database?
  public let storage: StorageOptions?
  /// Present when the module depends on "auth".
  public let remoteAuth: RemoteAuth?
  public let logger: Logger
  public let logSink: LogSink
  public let logLevel: Logger.Level
  /// The clients made with `client(for:)`: the assembly exports their breakers on /metrics.
  let clients = ClientList()

  /// A client to another module (`--<name>-target host:port[,host:port]`), calling with this
  /// service's client-credentials token when it depends on auth. Run it: add it to
  /// `ModuleParts.lifecycle`.
  public func client(for service: String, idempotentMethods: [MethodDescriptor] = []) throws -> ServiceClient {
    let key = "\(service)-target"
    guard let (text, _) = self.layers.raw(key) else {
      throw ConfigError(key: key, origin: nil, reason: "required: this service calls \(service) (give --\(key) host:port[,host:port])")
    }
    var config = ServiceClientConfig(replicas: try ServiceTargets.parse(text, key: key))
    config.idempotentMethods = idempotentMethods
    let extra: [any ClientInterceptor] = self.remoteAuth.map { [BearerTokenInterceptor(credentials: $0.credentials)] } ?? []
    let client = try ServiceClient(config, name: service, interceptors: extra)
    self.clients.add(client)
    return client
  }
}

/// The downstream clients a module made (see `ModuleContext.clients`).
final class ClientList: Sendable {
  private let clients = Mutex<[ServiceClient]>([])
  func add(_ client: ServiceClient) { self.clients.withLock { $0.append(client) } }
  var all: [ServiceClient] { self.clients.withLock { $0 } }
}

/// What a module hands to its host.
public struct ModuleParts: Sendable {
  /// The GRPCCore services (health is added by the host).
  public var services: [any RegistrableRPCService]
  /// Credentials checks; nil means the remote auth from the context (or none).
  public var security: ServiceHost.Security?
  /// Readiness checks besides the database and the JWKS, which the assembly adds.
  public var readiness: [DependencyCheck]
  /// Long-running pieces the host starts before serving and stops after draining (clients,
  /// background workers), stopped in reverse order.
  public var lifecycle: [any Service]
  /// Runs once migrations are applied and before the listeners open (key bootstrap …).
  public var beforeServing: [BeforeServingStep]
  /// Bounded queues of the module's own (e.g. password hashing), exported on `/metrics` as
  /// `<prefix>_size`, `_in_use`, `_waiting` … (the database's are exported by the assembly).
  public var gates: [(prefix: String, gate: BoundedGate)]
  /// Response caches of the module's own, exported on `/metrics` as `cache_hits_total{cache}` …
  public var caches: [any ResponseCacheObservable]
  /// Topics of the module's outbox, served as `events.v1.EventFeed` (service principals only)
  /// and purged by the outbox retention job.
  public var feeds: [EventTopic]
  /// Consumers of other services' feeds: run by the host, lag on `/metrics`.
  public var eventConsumers: [EventConsumer]
  /// Handlers of the module's background jobs (its `jobs` table, `JobQueue`); the assembly
  /// runs a `JobWorker` for them (docs/services.md, "Jobs").
  public var jobs: [JobHandler]
  /// Jobs that run every so often, once per period across replicas; each needs a handler in
  /// `jobs`.
  public var recurringJobs: [RecurringJob]
  /// Backfills that need more than the database (another service's answers), so they can't
  /// be static `ServiceModule.dataMigrations`: run in the background once the schema is
  /// migrated, while the service serves, retried with backoff until done (a dependency that
  /// is down delays them, never the start). Names must differ from the static ones.
  public var dataMigrations: [DataMigration]
  /// Series of the module's own on `/metrics` (each registers its gauges and counters on the
  /// host's registry, typically sampled on scrape with `HostMetrics.onScrape`).
  public var metrics: [@Sendable (HostMetrics) -> Void]

  public init(
    services: [any RegistrableRPCService], security: ServiceHost.Security? = nil, readiness: [DependencyCheck] = [],
    lifecycle: [any Service] = [], beforeServing: [BeforeServingStep] = [], gates: [(prefix: String, gate: BoundedGate)] = [],
    caches: [any ResponseCacheObservable] = [], jobs: [JobHandler] = [], recurringJobs: [RecurringJob] = [],
    dataMigrations: [DataMigration] = [], feeds: [EventTopic] = [], eventConsumers: [EventConsumer] = [],
    metrics: [@Sendable (HostMetrics) -> Void] = []
  ) {
    self.metrics = metrics
    self.dataMigrations = dataMigrations
    self.jobs = jobs
    self.recurringJobs = recurringJobs
    self.feeds = feeds
    self.eventConsumers = eventConsumers
    self.gates = gates
    self.caches = caches
    self.services = services
    self.security = security
    self.readiness = readiness
    self.lifecycle = lifecycle
    self.beforeServing = beforeServing
  }
}

/// A named step the host runs before it serves; a failure stops the start with one log line
/// naming the step.
public struct BeforeServingStep: Sendable {
  public var name: String
  public var run: @Sendable () async throws -> Void
  public init(_ name: String, _ run: @escaping @Sendable () async throws -> Void) {
    self.name = name
    self.run = run
  }
}

/// Host:port lists in configuration.
public enum ServiceTargets {
  /// "host:port[,host:port]" → the entries, each checked.
  public static func parse(_ text: String, key: String) throws -> [String] {
    let entries = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !entries.isEmpty else { throw ConfigError(key: key, origin: nil, reason: "empty; give host:port[,host:port]") }
    for entry in entries {
      let parts = entry.split(separator: ":")
      guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port) else {
        throw ConfigError(key: key, origin: nil, reason: "\"\(entry)\" is not host:port")
      }
    }
    return entries
  }
}
