import GRPCCore
import NIOConcurrencyHelpers
import QuizwireProtos

/// Serving status of each service name ("" is the whole server), shared by the health service
/// and whatever decides readiness.
public final class HealthStatusStore: Sendable {
  public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  private struct State {
    var statuses: [String: Status] = ["": .serving]
    var watchers: [Int: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
    var nextID = 0
  }
  private let state = NIOLockedValueBox(State())

  public init() {}

  /// Sets the status of `service` ("" for the server as a whole) and notifies watchers.
  public func set(_ status: Status, for service: String = "") {
    let watchers = self.state.withLockedValue { s -> [AsyncStream<Status>.Continuation] in
      guard s.statuses[service] != status else { return [] }
      s.statuses[service] = status
      return s.watchers.values.filter { $0.service == service }.map(\.continuation)
    }
    for w in watchers { w.yield(status) }
  }

  /// The status of `service`, `nil` if it is not known.
  public func status(of service: String) -> Status? {
    self.state.withLockedValue { $0.statuses[service] }
  }

  /// Every status change of `service`, starting with the current one.
  func watch(_ service: String) -> AsyncStream<Status> {
    let (stream, continuation) = AsyncStream.makeStream(of: Status.self, bufferingPolicy: .bufferingNewest(1))
    let id = self.state.withLockedValue { s -> Int in
      defer { s.nextID += 1 }
      s.watchers[s.nextID] = (service, continuation)
      continuation.yield(s.statuses[service] ?? .serviceUnknown)
      return s.nextID
    }
    continuation.onTermination = { [weak self] _ in
      _ = self?.state.withLockedValue { $0.watchers.removeValue(forKey: id) }
    }
    return stream
  }
}

/// `grpc.health.v1.Health`, identical on the wire to the standard health checking protocol.
public struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  public let store: HealthStatusStore

  public init(store: HealthStatusStore) { self.store = store }

  public func check(
    request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard let status = self.store.status(of: request.service) else {
      throw RPCError(code: .notFound, message: "unknown service \"\(request.service)\"")
    }
    var response = Grpc_Health_V1_HealthCheckResponse()
    response.status = status
    return response
  }

  public func watch(
    request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    for await status in self.store.watch(request.service) {
      var message = Grpc_Health_V1_HealthCheckResponse()
      message.status = status
      try await response.write(message)
    }
  }
}
