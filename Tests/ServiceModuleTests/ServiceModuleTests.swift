import AuthService
import FramedTransport
import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import GRPCCore
import Logging
import ServiceLifecycle
import QuizwireProtos
import ServiceKit
import Storage
import TestSupport
import XCTest

/// A module declared in this target runs under `ServiceHost` with remote auth against a real
/// auth service, from configuration alone.
final class ServiceModuleTests: XCTestCase {
  func testThrowawayModuleServesBehindTheRealAuthService() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // The auth service registers "sample" as an internal client, as `quizwire up` does.
    var options = AuthServerOptions(dataDir: dir)
    options.hashing = ScryptParameters(logN: 10, r: 8, p: 1)
    options.internalClients = ["sample"]
    var authHost = ServiceHost.Config()
    authHost.rateLimit = nil
    let auth = try await AuthServer.make(options: options, host: authHost, logSink: CapturedLog().sink)
    let authRun = Task { try await auth.host.run() }
    let authAddress = try await auth.host.addresses().framed

    let log = CapturedLog()
    let layers = try ConfigLayers(
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": LocalSecretFile.clientSecretPath(dataDir: dir, service: "sample")],
      flags: ["auth-target": authAddress, "data-dir": dir, "framed-port": "0", "grpc-port": "0", "admin-port": "0"])
    let sample = try await ServiceAssembly.host(SampleModule.self, layers: layers, logSink: log.sink)
    let sampleRun = Task { try await sample.run() }
    do {
      let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(try await sample.addresses().framed)!]))
      let authTransport = try FramedClientTransport(config: .init(targets: [FramedTarget(authAddress)!]))
      try await withGRPCClient(transport: authTransport) { authGRPC in
        try await withGRPCClient(transport: transport) { grpc in
          let echo = Bench_V1_EchoService.Client(wrapping: grpc)
          let authClient = Auth_V1_AuthService.Client(wrapping: authGRPC)
          _ = try await authClient.register(
            .with {
              $0.email = "sam@example.com"; $0.password = "a good long password"
            })
          let user = try await authClient.login(
            .with {
              $0.email = "sam@example.com"; $0.password = "a good long password"
            }
          ).accessToken
          let bearer: Metadata = ["authorization": .string("Bearer \(user)")]

          // A user token verified through the remote JWKS; the handler's write reached the
          // module's own migrated database.
          let reply = try await echo.unary(.with { $0.payload = Data("hi".utf8) }, metadata: bearer)
          XCTAssertEqual(reply.payload, Data("hi".utf8))
          // An API key checked through CheckAPIKey with the module's own client-credentials token.
          let key = try await authClient.createAPIKey(.with { $0.name = "bot" }, metadata: bearer).key
          _ = try await echo.unary(.init(), metadata: ["x-api-key": .string(key)])
          await assertCode(.unauthenticated) { _ = try await echo.unary(.init()) }
          await assertCode(.unauthenticated) { _ = try await echo.unary(.init(), metadata: ["x-api-key": "qw_0000000000000000_nope"]) }

          // servicesOnly admits the internal client's token, not a user's.
          await assertCode(.permissionDenied) {
            try await echo.serverStream(.init(), metadata: bearer) { for try await _ in $0.messages {} }
          }
          let secret = try String(contentsOfFile: LocalSecretFile.clientSecretPath(dataDir: dir, service: "sample"), encoding: .utf8)
          let serviceToken = try await authClient.clientCredentials(
            .with {
              $0.clientID = "sample"; $0.clientSecret = secret
            }
          ).accessToken
          let count = try await echo.serverStream(.init(), metadata: ["authorization": .string("Bearer \(serviceToken)")]) { response in
            var payloads: [String] = []
            for try await message in response.messages { payloads.append(String(decoding: message.payload, as: UTF8.self)) }
            return payloads
          }
          XCTAssertEqual(count, ["2"], "both successful unary calls were recorded")
        }
      }
      XCTAssertTrue(sample.readiness.isReady, "ready: database and remote JWKS in hand")
      // Saturation is visible: the database's connection gates on the module's /metrics, the
      // password-hashing queue on auth's.
      let sampleAdmin = try await sample.addresses().admin
      let sampleMetrics = try await metricsText(try XCTUnwrap(sampleAdmin))
      XCTAssertTrue(sampleMetrics.contains("db_pool_in_use"), sampleMetrics)
      let authAdmin = try await auth.host.addresses().admin
      let authMetrics = try await metricsText(try XCTUnwrap(authAdmin))
      XCTAssertTrue(authMetrics.contains("password_hash_waiting"), authMetrics)
      XCTAssertFalse(log.rawLines().joined().contains(secret: dir), "no secret in the module's log")
    } catch {
      sample.beginGracefulShutdown()
      auth.host.beginGracefulShutdown()
      _ = await sampleRun.result
      _ = await authRun.result
      throw error
    }
    sample.beginGracefulShutdown()
    try await sampleRun.value
    auth.host.beginGracefulShutdown()
    try await authRun.value
  }

  func testAModuleThatCallsAuthFailsAtStartWithoutAuthTarget() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let layers = try ConfigLayers(environment: ["QUIZWIRE_CLIENT_SECRET": "s"], flags: ["data-dir": dir])
    do {
      _ = try await ServiceAssembly.host(SampleModule.self, layers: layers, logSink: CapturedLog().sink)
      XCTFail("started without --auth-target")
    } catch let error as ConfigError {
      XCTAssertEqual(error.key, "auth-target")
      XCTAssertTrue(error.description.contains("--auth-target"), error.description)
    }
  }

  func testAFailingBeforeServingStepStopsTheStartWithOneLogLine() async throws {
    struct KeysMissing: Error {}
    let log = CapturedLog()
    let stopped = StoppedFlag()
    let host = try ServiceHost(
      name: "sample", services: [], lifecycle: [stopped],
      beforeServing: [BeforeServingStep("key bootstrap") { throw KeysMissing() }],
      config: ServiceHost.Config(), logSink: log.sink)
    do {
      try await host.run()
      XCTFail("served despite a failing before-serving step")
    } catch let error as HostStartError {
      XCTAssertEqual(error.step, "key bootstrap")
    }
    let lines = log.entries().filter { ($0["level"] as? String) == "critical" }
    XCTAssertEqual(lines.count, 1)
    XCTAssertEqual(lines.first?["step"] as? String, "key bootstrap")
    XCTAssertTrue(stopped.value, "lifecycle services were stopped")
  }

  func testTheCatalogueListsEveryMethodOfTheModules() {
    XCTAssertEqual(SampleModule.methods.map(\.method), ["Unary", "ServerStream", "ClientStream", "Bidi"])
    XCTAssertEqual(MethodCatalogue.method(named: "bench.v1.EchoService/Bidi")?.kind, .bidiStreaming)
    let register = MethodCatalogue.method(named: "auth.v1.AuthService/Register")
    XCTAssertTrue(register?.request == Auth_V1_RegisterRequest.self)
    XCTAssertTrue(register?.response == Auth_V1_RegisterResponse.self)
    XCTAssertEqual(AuthModule.methods.count, MethodCatalogue.methods(of: "auth.v1.AuthService").count)
    XCTAssertGreaterThan(MethodCatalogue.descriptorSet.count, 1000)
  }
}

/// A lifecycle service that records that it was stopped.
final class StoppedFlag: Service, @unchecked Sendable {
  // Written once by `run` before it returns and read after the host's `run` returned,
  // which awaited it: the accesses are ordered by that await.
  var value = false
  func run() async throws {
    try? await gracefulShutdown()
    self.value = true
  }
}

private func metricsText(_ admin: String) async throws -> String {
  let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(admin)/metrics")!)
  return String(decoding: data, as: UTF8.self)
}

private func assertCode(_ code: RPCError.Code, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
  do {
    try await body()
    XCTFail("succeeded, expected \(code)", file: file, line: line)
  } catch let error as RPCError {
    XCTAssertEqual(error.code, code, error.message, file: file, line: line)
  } catch {
    XCTFail("\(error)", file: file, line: line)
  }
}

extension String {
  fileprivate func contains(secret dir: String) -> Bool {
    guard let secret = try? String(contentsOfFile: LocalSecretFile.clientSecretPath(dataDir: dir, service: "sample"), encoding: .utf8) else { return false }
    return self.contains(secret)
  }
}
