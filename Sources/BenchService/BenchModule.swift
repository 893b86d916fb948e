import ServiceKit

/// `bench.v1.EchoService` as a module of the suite: what the benchmarks and the interop tests
/// drive. No rate limit and long deadlines unless configured, so a load run measures the
/// stack rather than its limits.
public enum BenchModule: ServiceModule {
  public static let name = "bench"
  public static let summary = "The echo service the benchmarks and interop tests drive."
  public static let protoServices = ["bench.v1.EchoService"]
  public static let defaultPorts = ServicePorts(framed: 7400, grpc: 7401, admin: 7402)
  public static var policies: AccessPolicies { AccessPolicies(fallback: .public) }

  public static func configureHost(_ config: inout ServiceHost.Config) {
    config.rateLimit = nil
    config.defaultDeadline = .seconds(3600)
    // The echo handler never blocks, so it can run on its connection's event loop.
    config.framed.runHandlersOnEventLoop = true
  }

  public static func make(_ context: ModuleContext<NoOptions>) async throws -> ModuleParts {
    ModuleParts(services: [EchoService()])
  }
}
