import AuthService
import Foundation
import FramedTransport
import GRPCCore
import QuizService
import QuizwireProtos
import ServiceKit
import Storage
import TestSupport
import XCTest

/// The quiz service as it runs in production, in-process: a real auth service (test-speed
/// scrypt) that registers "quiz" as an internal client, and the quiz module assembled from
/// configuration alone (`ServiceAssembly`), with remote auth against it; framed-wire clients.
/// Signed-in callers: an admin, a quiz owner, another author, a plain user, the suite's own
/// service (client-credentials token of the internal client) and the owner's read-only API key.
final class QuizHarness: Sendable {
  let dir: String
  let auth: AuthServer
  let quizHost: ServiceHost
  let authClient: GRPCClient<FramedClientTransport>
  let client: GRPCClient<FramedClientTransport>
  let quiz: Quiz_V1_QuizService.Client<FramedClientTransport>
  let authAPI: Auth_V1_AuthService.Client<FramedClientTransport>
  let log: CapturedLog
  private let tasks: [Task<Void, any Error>]

  static let adminEmail = "admin@example.com"
  static let password = "a good long password"

  static func start() async throws -> QuizHarness {
    let dir = try TestDatabases.temporaryDirectory()
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = ["quiz"]
    options.service.adminEmails = [adminEmail]
    var authConfig = ServiceHost.Config()
    authConfig.rateLimit = nil
    let auth = try await AuthServer.make(options: options, host: authConfig, logSink: CapturedLog().sink)
    let authRun = Task { try await auth.host.run() }
    let authAddress = try await auth.host.addresses().framed

    let log = CapturedLog()
    let layers = try ConfigLayers(
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: "quiz")],
      flags: ["auth-target": authAddress, "data-dir": dir, "framed-port": "0", "grpc-port": "0", "admin-port": "0"])
    let quizHost = try await ServiceAssembly.host(QuizModule.self, layers: layers, logSink: log.sink)
    let quizRun = Task { try await quizHost.run() }
    let quizAddress = try await quizHost.addresses().framed

    let authClient = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(authAddress)!])))
    let client = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(quizAddress)!])))
    let authConnections = Task { try await authClient.runConnections() }
    let connections = Task { try await client.runConnections() }
    return QuizHarness(
      dir: dir, auth: auth, quizHost: quizHost, authClient: authClient, client: client, log: log,
      tasks: [authRun, quizRun, authConnections, connections])
  }

  private init(
    dir: String, auth: AuthServer, quizHost: ServiceHost, authClient: GRPCClient<FramedClientTransport>,
    client: GRPCClient<FramedClientTransport>, log: CapturedLog, tasks: [Task<Void, any Error>]
  ) {
    self.dir = dir
    self.auth = auth
    self.quizHost = quizHost
    self.authClient = authClient
    self.client = client
    self.quiz = Quiz_V1_QuizService.Client(wrapping: client)
    self.authAPI = Auth_V1_AuthService.Client(wrapping: authClient)
    self.log = log
    self.tasks = tasks
  }

  func stop() async {
    self.client.beginGracefulShutdown()
    self.authClient.beginGracefulShutdown()
    self.quizHost.beginGracefulShutdown()
    self.auth.host.beginGracefulShutdown()
    for task in self.tasks { _ = await task.result }
    try? FileManager.default.removeItem(atPath: self.dir)
  }

  /// The quiz database's file (another connection to it, for bulk test data).
  var quizDatabasePath: String { self.dir + "/quiz.sqlite" }

  // MARK: Credentials

  static func bearer(_ token: String) -> Metadata { ["authorization": .string("Bearer \(token)")] }

  /// Registers `email` (once) and signs in: bearer metadata and the user's id.
  func user(_ email: String) async throws -> (metadata: Metadata, id: String) {
    _ = try? await self.authAPI.register(
      .with {
        $0.email = email
        $0.password = Self.password
      })
    let tokens = try await self.authAPI.login(
      .with {
        $0.email = email
        $0.password = Self.password
      })
    let me = try await self.authAPI.getMe(.init(), metadata: Self.bearer(tokens.accessToken))
    return (Self.bearer(tokens.accessToken), me.id)
  }

  /// The quiz service's own client-credentials token (a service principal).
  func serviceMetadata() async throws -> Metadata {
    let secret = try String(contentsOfFile: LocalSecretFile.clientSecretPath(dataDir: self.dir, service: "quiz"), encoding: .utf8)
    let token = try await self.authAPI.clientCredentials(
      .with {
        $0.clientID = "quiz"
        $0.clientSecret = secret.trimmingCharacters(in: .whitespacesAndNewlines)
      }
    ).accessToken
    return Self.bearer(token)
  }

  /// An API key of the user signed in with `owner`, with `scopes`.
  func apiKey(of owner: Metadata, scopes: [String]) async throws -> Metadata {
    let key = try await self.authAPI.createAPIKey(
      .with {
        $0.name = "key"
        $0.scopes = scopes
      }, metadata: owner
    ).key
    return ["x-api-key": .string(key)]
  }
}

/// Test content.
enum Sample {
  static func question(_ n: Int = 0) -> Quiz_V1_Question {
    .with {
      $0.kind = .singleChoice
      $0.prompt = "Question \(n)?"
      $0.choices = [
        .with {
          $0.id = "a"
          $0.text = "Yes"
        },
        .with {
          $0.id = "b"
          $0.text = "No"
        },
      ]
      $0.answerKey = .with { $0.correctChoiceIds = ["a"] }
    }
  }

  static func quiz(_ title: String = "Sample quiz", questions: Int = 1) -> Quiz_V1_Quiz {
    .with {
      $0.title = title
      $0.description_p = "About things."
      $0.tags = ["swift"]
      $0.questions = (0..<questions).map { question($0) }
    }
  }
}

/// The status code a call failed with, nil when it succeeded.
func statusCode(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch {
    return rpcErrorOf(error).code
  }
}

func rpcError(_ body: () async throws -> Void) async -> RPCError? {
  do {
    try await body()
    return nil
  } catch {
    return rpcErrorOf(error)
  }
}
