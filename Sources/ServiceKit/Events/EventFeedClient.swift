import GRPCCore
import QuizwireProtos

/// A producer's `events.v1.EventFeed` as a consumer sees it.
public protocol EventFeedClient: Sendable {
  /// "auth.users": the producer and topic, for logs, metrics and the offset table.
  var feed: String { get }
  var topic: String { get }
  /// Runs `body` over the subscription's messages; returns when `body` does.
  func subscribe(
    _ request: Events_V1_SubscribeRequest,
    _ body: @escaping @Sendable (RPCAsyncSequence<Events_V1_SubscribeResponse, any Error>) async throws -> Void
  ) async throws
  func acknowledge(_ request: Events_V1_AcknowledgeRequest) async throws
}

/// The feed of another service over a GRPCCore client (normally a `ServiceClient` to it),
/// calling as this service's own principal (client-credentials token).
public struct RemoteEventFeed<Transport: ClientTransport>: EventFeedClient {
  public let feed: String
  public let topic: String
  private let client: Events_V1_EventFeed.Client<Transport>
  private let credentials: ClientCredentialsToken?
  /// How long one subscription lasts before the consumer resubscribes from its offset (the
  /// producer's per-method deadline for Subscribe is at least this).
  public var subscriptionLifetime: Duration = .seconds(3600)

  public init(producer: String, topic: String, client: GRPCClient<Transport>, credentials: ClientCredentialsToken?) {
    self.feed = "\(producer).\(topic)"
    self.topic = topic
    self.client = Events_V1_EventFeed.Client(wrapping: client)
    self.credentials = credentials
  }

  private func metadata() async throws -> Metadata {
    var metadata: Metadata = [:]
    if let credentials { metadata.addString("Bearer \(try await credentials.token())", forKey: "authorization") }
    return metadata
  }

  public func subscribe(
    _ request: Events_V1_SubscribeRequest,
    _ body: @escaping @Sendable (RPCAsyncSequence<Events_V1_SubscribeResponse, any Error>) async throws -> Void
  ) async throws {
    var options = CallOptions.defaults
    options.timeout = self.subscriptionLifetime
    try await self.client.subscribe(request, metadata: try await self.metadata(), options: options) { response in
      try await body(response.messages)
    }
  }

  public func acknowledge(_ request: Events_V1_AcknowledgeRequest) async throws {
    _ = try await self.client.acknowledge(request, metadata: try await self.metadata())
  }
}
