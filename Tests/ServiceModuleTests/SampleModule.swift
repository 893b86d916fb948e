import Foundation
import GRPCCore
import QuizwireProtos
import ServiceKit
import SQLKit
import ServiceContextModule
import Storage

// The whole of a new service's wiring: one module. (The registry line lives in the CLI.)

/// A throwaway service: an echo that remembers who called it, behind the auth service.
enum SampleModule: ServiceModule {
  static let name = "sample"
  static let summary = "A throwaway service that proves one module is all a service needs."
  static let protoServices = ["bench.v1.EchoService"]
  static let defaultPorts = ServicePorts(framed: 0, grpc: 0, admin: 0)
  static let dependsOn = ["auth"]

  static var migrations: [Migration] {
    [Migration(version: 1, name: "callers") { _ in ["CREATE TABLE callers (subject TEXT NOT NULL)"] }]
  }

  static var policies: AccessPolicies {
    AccessPolicies([Bench_V1_EchoService.Method.ServerStream.descriptor: .servicesOnly], fallback: .authenticated)
  }

  static func configureHost(_ config: inout ServiceHost.Config) {
    config.readinessInterval = .milliseconds(100)
  }

  static func make(_ context: ModuleContext<NoOptions>) async throws -> ModuleParts {
    guard let database = context.database else { throw ConfigError(key: "data-dir", origin: nil, reason: "needs its database") }
    return ModuleParts(services: [RememberingEcho(db: database)])
  }
}

// MARK: Handlers (not part of the wiring)

/// Unary echoes and records the caller; ServerStream answers how many calls were recorded.
struct RememberingEcho: Bench_V1_EchoService.SimpleServiceProtocol {
  let db: Database

  func unary(request: Bench_V1_EchoRequest, context: ServerContext) async throws -> Bench_V1_EchoResponse {
    let subject = ServiceContext.current?.call?.principal?.subject ?? "-"
    try await self.db.transaction { uow in try await uow.write("INSERT INTO callers (subject) VALUES (\(bind: subject))") }
    return .with { $0.payload = request.payload }
  }

  func serverStream(request: Bench_V1_EchoRequest, response: RPCWriter<Bench_V1_EchoResponse>, context: ServerContext) async throws {
    struct Row: Decodable { var n: Int }
    let count = try await self.db.read { uow in
      try await uow.sql.raw("SELECT COUNT(*) AS n FROM callers").first(decoding: Row.self)?.n ?? 0
    }
    try await response.write(.with { $0.payload = Data("\(count)".utf8) })
  }

  func clientStream(request: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>, context: ServerContext) async throws -> Bench_V1_EchoResponse {
    throw RPCError(code: .unimplemented, message: "not in the sample")
  }

  func bidi(request: RPCAsyncSequence<Bench_V1_EchoRequest, any Error>, response: RPCWriter<Bench_V1_EchoResponse>, context: ServerContext) async throws {
    throw RPCError(code: .unimplemented, message: "not in the sample")
  }
}
