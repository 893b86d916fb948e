import AuthService
import Foundation
import Gateway
import QuizService
import ScoringService
import ServiceKit
import Storage
import TestSupport
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The suite as `quizwire up` runs it, in-process: a real auth service (test-speed scrypt)
/// with quiz and scoring as internal clients, quiz and scoring assembled from configuration
/// (`ServiceAssembly`), and the gateway in front of them on 127.0.0.1, port 0, over real HTTP.
final class GatewayHarness: Sendable {
  let dir: String
  let auth: AuthServer
  /// auth's log lines: what reached the service (request ids).
  let authLog: CapturedLog
  /// The gateway's own log lines (access lines …).
  let gatewayLog: CapturedLog
  let hosts: [ServiceHost]
  let gateway: GatewayHost
  /// "http://127.0.0.1:<port>".
  let baseURL: String
  let adminURL: String
  private let tasks: [Task<Void, any Error>]

  /// `gatewayFlags` adds gateway settings (`cors-origins` …) to the ones every test needs.
  static func start(gatewayFlags: [String: String] = [:]) async throws -> GatewayHarness {
    let dir = try TestDatabases.temporaryDirectory()
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = ["quiz", "scoring"]
    var authConfig = ServiceHost.Config()
    authConfig.rateLimit = nil
    let authLog = CapturedLog()
    let auth = try await AuthServer.make(options: options, host: authConfig, logSink: authLog.sink)
    var tasks = [Task { try await auth.host.run() }]
    let authAddress = try await auth.host.addresses().framed

    func host<M: ServiceModule>(_ module: M.Type, _ extra: [String: String]) async throws -> ServiceHost {
      let layers = try ConfigLayers(
        environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: module.name)],
        flags: ["auth-target": authAddress, "data-dir": dir, "framed-port": "0", "grpc-port": "0", "admin-port": "0"].merging(extra) { $1 })
      let host = try await ServiceAssembly.host(module, layers: layers, logSink: CapturedLog().sink)
      tasks.append(Task { try await host.run() })
      return host
    }
    let quiz = try await host(QuizModule.self, ["rate-limit": "0"])
    let quizAddress = try await quiz.addresses().framed
    let scoring = try await host(ScoringModule.self, ["quiz-target": quizAddress, "rate-limit": "0"])
    let scoringAddress = try await scoring.addresses().framed

    // The gateway reads the same keys `quizwire serve gateway` does.
    let settings = try GatewaySettings(
      layers: ConfigLayers(
        environment: [:],
        flags: [
          "http-port": "0", "admin-port": "0", "auth-target": authAddress, "quiz-target": quizAddress, "scoring-target": scoringAddress,
          "data-dir": dir,
        ].merging(gatewayFlags) { $1 }))
    let gatewayLog = CapturedLog()
    let gateway = try GatewayHost(settings: settings, logSink: gatewayLog.sink)
    tasks.append(Task { try await gateway.run() })
    let addresses = try await gateway.addresses()
    return GatewayHarness(
      dir: dir, auth: auth, authLog: authLog, gatewayLog: gatewayLog, hosts: [quiz, scoring], gateway: gateway, baseURL: "http://\(addresses.http)",
      adminURL: "http://\(addresses.admin)", tasks: tasks)
  }

  private init(
    dir: String, auth: AuthServer, authLog: CapturedLog, gatewayLog: CapturedLog, hosts: [ServiceHost], gateway: GatewayHost, baseURL: String, adminURL: String,
    tasks: [Task<Void, any Error>]
  ) {
    self.dir = dir
    self.auth = auth
    self.authLog = authLog
    self.gatewayLog = gatewayLog
    self.hosts = hosts
    self.gateway = gateway
    self.baseURL = baseURL
    self.adminURL = adminURL
    self.tasks = tasks
  }

  /// Waits for `hosts[index]`'s run to end (after `beginGracefulShutdown`).
  func waitUntilStopped(_ index: Int) async throws {
    // tasks: [auth, quiz, scoring, gateway]: a host's run task is at index + 1.
    _ = await self.tasks[index + 1].result
  }

  func stop() async {
    // The gateway first (its clients close after its last request), then the services.
    self.tasks.last?.cancel()
    for host in self.hosts.reversed() { host.beginGracefulShutdown() }
    self.auth.host.beginGracefulShutdown()
    for task in self.tasks { _ = await task.result }
    try? FileManager.default.removeItem(atPath: self.dir)
  }
}

/// A gateway on its own: its services at `targets` (short name → address; any left out are
/// 127.0.0.1:1, where every connection is refused), its database in a temporary folder,
/// `flags` on top. Serves until the returned task is cancelled.
func startLoneGateway(targets: [String: String] = [:], flags: [String: String] = [:]) async throws -> (
  gateway: GatewayHost, addresses: (http: String, admin: String), task: Task<Void, any Error>
) {
  var all = ["http-port": "0", "admin-port": "0", "data-dir": try TestDatabases.temporaryDirectory()]
  for name in GatewaySettings.upstreamNames { all["\(name)-target"] = targets[name] ?? "127.0.0.1:1" }
  let settings = try GatewaySettings(layers: ConfigLayers(environment: [:], flags: all.merging(flags) { $1 }))
  let gateway = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
  let task = Task { try await gateway.run() }
  do {
    return (gateway, try await gateway.addresses(), task)
  } catch {
    task.cancel()
    throw error
  }
}

/// Whether `task` (a draining gateway's run) ended by itself within `limit`; if not, it is
/// cancelled then, so a test that fails doesn't hang.
func endsByItself(_ task: Task<Void, any Error>, within limit: Duration = .seconds(10)) async -> Bool {
  let stopper = Task {
    try await Task.sleep(for: limit)
    task.cancel()
  }
  _ = await task.result
  stopper.cancel()
  return !task.isCancelled
}

/// One HTTP exchange with the gateway, and its envelope parsed.
struct HTTPResult {
  /// Sends `method url` with an optional JSON body (a string, sent as is) and headers.
  static func send(
    _ method: String, _ url: String, json: String? = nil, bearer: String? = nil, headers: [String: String] = [:], rawBody: Data? = nil
  ) async throws -> HTTPResult {
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = method
    if let json {
      request.httpBody = Data(json.utf8)
      request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    if let rawBody { request.httpBody = rawBody }
    if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (name, value) in http.allHeaderFields { fields["\(name)"] = "\(value)" }
    return HTTPResult(status: http.statusCode, headers: fields, body: data)
  }

  var status: Int
  var headers: [String: String]
  var body: Data
  /// The JSON body (nil when there is none, e.g. 204).
  var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: self.body)) as? [String: Any] }
  var data: [String: Any]? { self.json?["data"] as? [String: Any] }
  var list: [[String: Any]]? { self.json?["data"] as? [[String: Any]] }
  var meta: [String: Any]? { self.json?["meta"] as? [String: Any] }
  var error: [String: Any]? { self.json?["error"] as? [String: Any] }
  func header(_ name: String) -> String? { self.headers.first { $0.key.lowercased() == name.lowercased() }?.value }
  /// The field violations of the first BadRequest detail.
  var violations: [String: String] {
    let details = self.error?["details"] as? [[String: Any]] ?? []
    let badRequest = details.first { ($0["@type"] as? String)?.hasSuffix("google.rpc.BadRequest") == true }
    var result: [String: String] = [:]
    for violation in badRequest?["fieldViolations"] as? [[String: Any]] ?? [] {
      result[violation["field"] as? String ?? "?"] = violation["description"] as? String ?? ""
    }
    return result
  }
}

extension GatewayHarness {
  /// Sends `method path` with an optional JSON body (a string, sent as is) and headers.
  func request(
    _ method: String, _ path: String, json: String? = nil, bearer: String? = nil, headers: [String: String] = [:],
    rawBody: Data? = nil
  ) async throws -> HTTPResult {
    try await HTTPResult.send(method, self.baseURL + path, json: json, bearer: bearer, headers: headers, rawBody: rawBody)
  }

  static let password = "a good long password"

  /// Registers and signs in `email` through the gateway; returns the access token.
  func signIn(_ email: String, name: String) async throws -> String {
    let register = try await self.request(
      "POST", "/api/v1/auth/register", json: #"{"email":"\#(email)","password":"\#(Self.password)","displayName":"\#(name)"}"#)
    XCTAssertEqual(register.status, 201, String(decoding: register.body, as: UTF8.self))
    let login = try await self.request("POST", "/api/v1/auth/login", json: #"{"email":"\#(email)","password":"\#(Self.password)"}"#)
    XCTAssertEqual(login.status, 200, String(decoding: login.body, as: UTF8.self))
    return try XCTUnwrap(login.data?["accessToken"] as? String)
  }
}
