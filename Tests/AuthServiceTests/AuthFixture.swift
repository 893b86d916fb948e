@testable import AuthService
import Foundation
import FramedTransport
import GRPCCore
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage
import TestSupport
import XCTest

/// A real auth service on 127.0.0.1 port 0 (SQLite in a temp folder, fast test-only scrypt
/// parameters) and a framed-wire client to it.
final class AuthFixture: Sendable {
  let server: AuthServer
  let client: GRPCClient<FramedClientTransport>
  let auth: Auth_V1_AuthService.Client<FramedClientTransport>
  let log: CapturedLog
  private let tasks: [Task<Void, any Error>]
  private let dir: String

  static let admin = (email: "admin@example.com", password: "admin-password-1")

  static func start(databaseURL: String? = nil) async throws -> AuthFixture {
    let dir = try TestDatabases.temporaryDirectory()
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.service.adminEmails = [admin.email]
    options.databaseURL = databaseURL.map(Secret.init)
    if databaseURL != nil { options.keyEncryptionKey = Secret("test-kek-" + UUID().uuidString) }
    var host = ServiceHost.Config()
    host.rateLimit = nil
    host.readinessInterval = .milliseconds(100)
    let log = CapturedLog()
    let server = try await AuthServer.make(options: options, host: host, logSink: log.sink)
    let run = Task { try await server.host.run() }
    let addresses = try await server.host.addresses()
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(addresses.framed)!]))
    let client = GRPCClient(transport: transport)
    let connections = Task { try await client.runConnections() }
    return AuthFixture(server: server, client: client, log: log, tasks: [run, connections], dir: dir)
  }

  private init(server: AuthServer, client: GRPCClient<FramedClientTransport>, log: CapturedLog, tasks: [Task<Void, any Error>], dir: String) {
    self.server = server
    self.client = client
    self.auth = Auth_V1_AuthService.Client(wrapping: client)
    self.log = log
    self.tasks = tasks
    self.dir = dir
  }

  func stop() async {
    self.client.beginGracefulShutdown()
    self.server.host.beginGracefulShutdown()
    for task in self.tasks { _ = await task.result }
    try? await self.server.database.shutdown()
    try? FileManager.default.removeItem(atPath: self.dir)
  }

  // MARK: Helpers

  static func bearer(_ token: String) -> Metadata { ["authorization": .string("Bearer \(token)")] }

  @discardableResult
  func register(_ email: String, _ password: String = "a good long password", name: String = "") async throws -> Auth_V1_User {
    try await self.auth.register(
      .with {
        $0.email = email
        $0.password = password
        $0.displayName = name
      }
    ).user
  }

  func login(_ email: String, _ password: String = "a good long password") async throws -> Auth_V1_TokenResponse {
    try await self.auth.login(
      .with {
        $0.email = email
        $0.password = password
      })
  }

  func adminToken() async throws -> String {
    _ = try? await self.register(Self.admin.email, Self.admin.password)
    return try await self.login(Self.admin.email, Self.admin.password).accessToken
  }
}

/// The status code a call failed with, nil when it succeeded.
func statusCode(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}

func rpcError(_ body: () async throws -> Void) async -> RPCError? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error
  } catch {
    return RPCError(code: .unknown, message: "\(error)")
  }
}

/// Runs `body` the way a handler runs inside a call from `principal`: the interceptors'
/// `CallInfo` in the task's context (handlers called directly, without the wire).
func asCaller<T>(_ principal: Principal, requestID: String, _ body: () async throws -> T) async throws -> T {
  let call = CallInfo(
    requestID: requestID, method: MethodDescriptor(fullyQualifiedService: "auth.v1.AuthService", method: "InProcess"),
    peer: "in-process")
  call.principal = principal
  var context = ServiceContext.current ?? .topLevel
  context.call = call
  return try await ServiceContext.withValue(context) { try await body() }
}

/// A server context for calling a handler directly.
func inProcessContext(_ method: MethodDescriptor) -> ServerContext {
  ServerContext(descriptor: method, remotePeer: "in-process", localPeer: "in-process", cancellation: .init())
}

extension AuthService {
  /// The same service on the same database, with its audit events going to `audit` (tests
  /// read them back) and its time from `now`.
  func with(audit: AuditLog? = nil, now: WallClock? = nil) -> AuthService {
    AuthService(
      config: self.config, db: self.db, hasher: self.hasher, keyRing: self.keyRing, logger: self.logger,
      audit: audit ?? self.audit, now: now ?? self.now, users: self.users, tokens: self.tokens, keys: self.keys,
      clients: self.clients)
  }
}
