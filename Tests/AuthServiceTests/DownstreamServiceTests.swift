import BenchService
import FramedTransport
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import QuizwireProtos
import ServiceKit
import XCTest

@testable import AuthService

/// Another service protected by the auth service: it verifies user tokens against the auth
/// service's JWKS (fetched over the wire) and checks API keys through CheckAPIKey, calling with
/// its own client-credentials token.
final class DownstreamServiceTests: XCTestCase {
  func testEchoBehindAuthAcceptsTokensAndAPIKeysFromTheAuthService() async throws {
    let fx = try await AuthFixture.start()
    do {
      // The downstream service's machine identity.
      let admin = try await fx.adminToken()
      let client = try await fx.auth.registerClient(
        .with {
          $0.name = "echo"; $0.grantTypes = ["client_credentials"]; $0.confidential = true; $0.internalService = true
        }, metadata: AuthFixture.bearer(admin))
      let serviceToken: @Sendable () async throws -> String = {
        try await fx.auth.clientCredentials(
          .with {
            $0.clientID = client.clientID; $0.clientSecret = client.clientSecret
          }
        ).accessToken
      }
      var verifierConfig = TokenVerifier.Config(issuer: "quizwire-auth", audience: "quizwire")
      verifierConfig.refreshInterval = .milliseconds(100)  // production: 10 s
      let verifier = TokenVerifier(config: verifierConfig, source: AuthServiceJWKSSource(client: fx.client))
      let apiKeys = CachedAPIKeyChecker(AuthServiceAPIKeyChecker(client: fx.client, token: serviceToken))
      var config = ServiceHost.Config()
      config.readinessInterval = .milliseconds(50)
      let echoHost = try ServiceHost(
        name: "bench.v1.EchoService", services: [EchoService()],
        security: .init(policies: AccessPolicies(fallback: .authenticated), verifier: verifier, apiKeys: apiKeys),
        dependencies: [verifier.readinessCheck], config: config, logSink: CapturedLog().sink)
      let running = Task { try await echoHost.run() }
      defer { running.cancel() }
      let framed = try await echoHost.addresses().framed
      let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(framed)!]))
      try await withGRPCClient(transport: transport) { grpc in
        let echo = Bench_V1_EchoService.Client(wrapping: grpc)
        try await fx.register("dora@example.com")
        let user = try await fx.login("dora@example.com").accessToken
        let reply = try await echo.unary(.with { $0.payload = Data("hi".utf8) }, metadata: AuthFixture.bearer(user))
        XCTAssertEqual(reply.payload, Data("hi".utf8))
        let key = try await fx.auth.createAPIKey(.with { $0.name = "bot" }, metadata: AuthFixture.bearer(user)).key
        _ = try await echo.unary(.init(), metadata: ["x-api-key": .string(key)])
        let missing = await statusCode { _ = try await echo.unary(.init()) }
        XCTAssertEqual(missing, .unauthenticated)
        let badKey = await statusCode { _ = try await echo.unary(.init(), metadata: ["x-api-key": "qw_0000000000000000_nope"]) }
        XCTAssertEqual(badKey, .unauthenticated)
        // A token signed by a key rotated in after the downstream service fetched the JWKS:
        // the unknown kid makes it fetch once more (after the refresh interval), then it verifies.
        _ = try await fx.auth.rotateSigningKey(.init(), metadata: AuthFixture.bearer(admin))
        let fresh = try await fx.login("dora@example.com").accessToken
        try await Task.sleep(for: .milliseconds(150))
        _ = try await echo.unary(.init(), metadata: AuthFixture.bearer(fresh))
        _ = try await echo.unary(.init(), metadata: AuthFixture.bearer(user))  // the old key still verifies
      }
      XCTAssertTrue(echoHost.readiness.isReady, "ready once the JWKS is in hand")
      echoHost.beginGracefulShutdown()
      try await running.value
    } catch {
      await fx.stop()
      throw error
    }
    await fx.stop()
  }
}
