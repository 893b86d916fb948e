import AuthService
import Foundation
import FramedTransport
import GRPCCore
import QuizService
import QuizwireProtos
import ScoringService
import ServiceKit
import Storage
import TestSupport
import Synchronization
import XCTest

/// The scoring service as it runs in production, in-process: a real auth service (test-speed
/// scrypt) with "quiz" and "scoring" as internal clients, the quiz module and the scoring
/// module assembled from configuration alone (`ServiceAssembly`); framed-wire clients.
final class ScoringHarness: Sendable {
  let dir: String
  let auth: AuthServer
  let hosts: [ServiceHost]
  let clients: [GRPCClient<FramedClientTransport>]
  let authAPI: Auth_V1_AuthService.Client<FramedClientTransport>
  let quiz: Quiz_V1_QuizService.Client<FramedClientTransport>
  let scoring: Scoring_V1_ScoringService.Client<FramedClientTransport>
  /// One client per scoring replica (`scoring` is the first).
  let replicas: [Scoring_V1_ScoringService.Client<FramedClientTransport>]
  private let tasks: [Task<Void, any Error>]
  let authAddress: String
  /// Hosts started later (`startQuiz`), stopped with the rest.
  private let later = Mutex<[(host: ServiceHost, task: Task<Void, any Error>)]>([])

  static let password = "a good long password"

  /// `scoringDatabaseURL`: the scoring replicas share that PostgreSQL database (else each
  /// has SQLite in the test directory; use one replica then).
  /// `scoringFlags`: more configuration for the scoring hosts (e.g. `rate-limit`).
  static func start(
    scoringDatabaseURL: String? = nil, scoringReplicas: Int = 1, scoringFlags: [String: String] = [:]
  ) async throws -> ScoringHarness {
    let dir = try TestDatabases.temporaryDirectory()
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = ["quiz", "scoring"]
    var authConfig = ServiceHost.Config()
    authConfig.rateLimit = nil
    let auth = try await AuthServer.make(options: options, host: authConfig, logSink: CapturedLog().sink)
    var tasks = [Task { try await auth.host.run() }]
    let authAddress = try await auth.host.addresses().framed

    func host<M: ServiceModule>(_ module: M.Type, _ extra: [String: String], environment: [String: String] = [:]) async throws -> ServiceHost {
      let layers = try ConfigLayers(
        environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: module.name)].merging(environment) { $1 },
        flags: ["auth-target": authAddress, "data-dir": dir, "framed-port": "0", "grpc-port": "0", "admin-port": "0"].merging(extra) { $1 })
      let host = try await ServiceAssembly.host(module, layers: layers, logSink: CapturedLog().sink)
      tasks.append(Task { try await host.run() })
      return host
    }
    let quizHost = try await host(QuizModule.self, [:])
    let quizAddress = try await quizHost.addresses().framed
    var scoringHosts: [ServiceHost] = []
    var scoringAddresses: [String] = []
    for _ in 0..<scoringReplicas {
      let environment = scoringDatabaseURL.map { ["QUIZWIRE_DATABASE_URL": $0] } ?? [:]
      let scoringHost = try await host(
        ScoringModule.self, ["quiz-target": quizAddress].merging(scoringFlags) { $1 }, environment: environment)
      scoringHosts.append(scoringHost)
      scoringAddresses.append(try await scoringHost.addresses().framed)
    }

    var clients: [GRPCClient<FramedClientTransport>] = []
    for address in [authAddress, quizAddress] + scoringAddresses {
      let client = GRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(address)!])))
      tasks.append(Task { try await client.runConnections() })
      clients.append(client)
    }
    return ScoringHarness(
      dir: dir, auth: auth, authAddress: authAddress, hosts: [quizHost] + scoringHosts, clients: clients, tasks: tasks)
  }

  private init(
    dir: String, auth: AuthServer, authAddress: String, hosts: [ServiceHost], clients: [GRPCClient<FramedClientTransport>],
    tasks: [Task<Void, any Error>]
  ) {
    self.dir = dir
    self.authAddress = authAddress
    self.auth = auth
    self.hosts = hosts
    self.clients = clients
    self.authAPI = Auth_V1_AuthService.Client(wrapping: clients[0])
    self.quiz = Quiz_V1_QuizService.Client(wrapping: clients[1])
    self.scoring = Scoring_V1_ScoringService.Client(wrapping: clients[2])
    self.replicas = clients.dropFirst(2).map { Scoring_V1_ScoringService.Client(wrapping: $0) }
    self.tasks = tasks
  }

  /// Runs `body` against a started harness and stops it afterwards, whether `body` threw or not.
  static func with(
    scoringDatabaseURL: String? = nil, scoringReplicas: Int = 1, scoringFlags: [String: String] = [:],
    _ body: (ScoringHarness) async throws -> Void
  ) async throws {
    let h = try await ScoringHarness.start(scoringDatabaseURL: scoringDatabaseURL, scoringReplicas: scoringReplicas, scoringFlags: scoringFlags)
    do {
      try await body(h)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }

  /// Another quiz host on the same data on `framedPort` (the first one's, after it stopped).
  func startQuiz(framedPort: Int) async throws {
    let layers = try ConfigLayers(
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: self.dir, service: "quiz")],
      flags: [
        "auth-target": self.authAddress, "data-dir": self.dir, "framed-port": "\(framedPort)", "grpc-port": "0", "admin-port": "0",
      ])
    let host = try await ServiceAssembly.host(QuizModule.self, layers: layers, logSink: CapturedLog().sink)
    let task = Task { try await host.run() }
    self.later.withLock { $0.append((host, task)) }
    _ = try await host.addresses()
  }

  /// Waits for `hosts[index]`'s run to end (after `beginGracefulShutdown`).
  func waitUntilStopped(_ index: Int) async throws {
    // tasks: [auth, quiz, scoring replicas…, clients…]: a host's run task is at index + 1.
    _ = await self.tasks[index + 1].result
  }

  func stop() async {
    for (host, task) in self.later.withLock({ $0 }) {
      host.beginGracefulShutdown()
      _ = await task.result
    }
    for client in self.clients { client.beginGracefulShutdown() }
    for host in self.hosts.reversed() { host.beginGracefulShutdown() }
    self.auth.host.beginGracefulShutdown()
    for task in self.tasks { _ = await task.result }
    try? FileManager.default.removeItem(atPath: self.dir)
  }

  /// Registers `email` with `name` and signs in: bearer metadata and the user's id.
  func user(_ email: String, name: String) async throws -> (metadata: Metadata, id: String) {
    _ = try await self.authAPI.register(
      .with {
        $0.email = email
        $0.password = Self.password
        $0.displayName = name
      })
    let tokens = try await self.authAPI.login(
      .with {
        $0.email = email
        $0.password = Self.password
      })
    let bearer: Metadata = ["authorization": .string("Bearer \(tokens.accessToken)")]
    let me = try await self.authAPI.getMe(.init(), metadata: bearer)
    return (bearer, me.id)
  }

  /// Plays over `Play`: sends `first`, then whatever `respond` answers to each event (nil:
  /// close the request side); returns every event until the server ends the stream.
  func play(
    _ metadata: Metadata, first: Scoring_V1_PlayRequest,
    respond: @escaping @Sendable (Scoring_V1_PlayEvent) -> [Scoring_V1_PlayRequest]?
  ) async throws -> [Scoring_V1_PlayEvent] {
    let (requests, sink) = AsyncStream.makeStream(of: Scoring_V1_PlayRequest.self)
    sink.yield(first)
    return try await self.scoring.play(
      metadata: metadata,
      requestProducer: { writer in
        for await request in requests { try await writer.write(request) }
      },
      onResponse: { response in
        var events: [Scoring_V1_PlayEvent] = []
        defer { sink.finish() }
        for try await event in response.messages {
          events.append(event)
          guard let next = respond(event) else {
            sink.finish()
            continue
          }
          for request in next { sink.yield(request) }
        }
        return events
      })
  }
}

/// A three-question quiz: single choice (1 point), multiple choice (2), short text (3).
enum ScoringSample {
  static func choice(_ id: String) -> Quiz_V1_Choice {
    .with {
      $0.id = id
      $0.text = "Choice \(id)"
    }
  }

  static func quiz(limitSeconds: Int32 = 5) -> Quiz_V1_Quiz {
    .with {
      $0.title = "Scoring quiz"
      $0.description_p = "Three questions."
      $0.questionTimeLimitSeconds = limitSeconds
      $0.questions = [
        .with {
          $0.kind = .singleChoice
          $0.prompt = "One?"
          $0.points = 1
          $0.choices = [choice("a"), choice("b")]
          $0.answerKey = .with { $0.correctChoiceIds = ["a"] }
        },
        .with {
          $0.kind = .multipleChoice
          $0.prompt = "Two?"
          $0.points = 2
          $0.choices = [choice("a"), choice("b"), choice("c")]
          $0.answerKey = .with { $0.correctChoiceIds = ["a", "c"] }
        },
        .with {
          $0.kind = .shortText
          $0.prompt = "Who wrote the first compiler?"
          $0.points = 3
          $0.answerKey = .with { $0.acceptedTexts = ["Grace Hopper"] }
        },
      ]
    }
  }

  static func start(_ quizID: String, key: String = "") -> Scoring_V1_PlayRequest {
    .with {
      $0.start = .with {
        $0.quizID = quizID
        $0.idempotencyKey = key
      }
    }
  }

  static func answer(_ questionID: String, _ choices: [String] = [], text: String = "") -> Scoring_V1_PlayRequest {
    .with {
      $0.answer = .with {
        $0.questionID = questionID
        $0.choiceIds = choices
        $0.text = text
      }
    }
  }
}

func rpcCode(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}
