import FramedTransport
import GRPCCore
import GRPCProtobuf
import QuizwireProtos
import ServiceKit
import SwiftProtobuf
import Synchronization

/// The server-streaming routes, next to the unary `RouteTable`. They are declared here in Swift
/// rather than as `google.api.http` options because adding an annotation means regenerating
/// every service's protos; each entry names the generated method descriptor, so a renamed RPC
/// fails the build instead of a request.
struct StreamRoute: Sendable {
  let template: PathTemplate
  let descriptor: MethodDescriptor
  /// Builds the request message from the path bindings and the query, or throws the 400 the
  /// caller gets before any RPC.
  let bind: @Sendable (_ bindings: [(field: String, value: String)], _ query: [(String, String)]) throws(APIError) -> StreamCall

  /// The largest `top` a leaderboard stream accepts (the service's own limit, refused early).
  static let maxTop = 100

  static let all: [StreamRoute] = [
    StreamRoute(
      template: try! PathTemplate("/api/v1/quizzes/{quiz_id}/leaderboard/stream"),
      descriptor: Scoring_V1_ScoringService.Method.WatchLeaderboard.descriptor
    ) { bindings, query throws(APIError) in
      var request = Scoring_V1_WatchLeaderboardRequest()
      request.quizID = bindings.first { $0.field == "quiz_id" }?.value ?? ""
      request.topN = 10
      if let text = query.last(where: { $0.0 == "top" })?.1 {
        guard let top = Int32(text), top >= 1, top <= Int32(Self.maxTop) else {
          throw APIError.gateway(
            400, "top must be 1..\(Self.maxTop)", violations: [.init(field: "top", description: "must be an integer from 1 to \(Self.maxTop)")])
        }
        request.topN = top
      }
      return StreamCall(request: request) { (message: Scoring_V1_LeaderboardSnapshot) in message.version }
    }
  ]

  /// Whether `path` is a stream route's (cheap for every other path: they all end in "/stream").
  static func isStream(path: String) -> Bool { path.hasSuffix("/stream") && Self.match(path: path) != nil }

  /// The stream route for `path` and its bindings, if any.
  static func match(path: String) -> (StreamRoute, [(field: String, value: String)])? {
    let segments = PathTemplate.segments(of: path)
    for route in Self.all {
      if let bindings = route.template.match(segments) { return (route, bindings) }
    }
    return nil
  }
}

/// The bidi Play stream as a WebSocket and its tickets (`PlayEndpoints`), beside the server
/// streams: fixed paths, not table routes. The socket's path shadows `GET /api/v1/attempts/{id}`,
/// so they are answered before the route table is asked.
enum PlayRoutes {
  /// `GET`, upgraded to a WebSocket bridged to `scoring.v1.ScoringService/Play`.
  static let socket = "/api/v1/attempts/play"
  /// `POST` (bearer token): 201 with a single-use ticket for the socket's `?ticket=`.
  static let ticket = "/api/v1/attempts/play-ticket"
}

/// One bound streaming call: the request and how to read an event id from a response message.
/// Generic underneath (the serializers need the concrete types) but erased here, so the
/// responder handles every stream route alike.
struct StreamCall: Sendable {
  /// Starts the call; `onMessage` gets each message and its event id, `onEnd` the outcome
  /// (nil: OK), both on the upstream connection's event loop, so they must return at once.
  /// Throws only when no call could be started (no replica reachable).
  let start:
    @Sendable (
      _ client: ServiceClient, _ descriptor: MethodDescriptor, _ metadata: Metadata,
      _ onMessage: @escaping @Sendable (any SwiftProtobuf.Message, Int64) -> Void,
      _ onEnd: @escaping @Sendable ((any Error)?) -> Void
    ) async throws -> FramedWatch

  init<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(request: Request, eventID: @escaping @Sendable (Response) -> Int64) {
    // A watch on the framed transport, not a call through `GRPCClient`, and no task of ours
    // reads it: for thousands of open leaderboards, the async frames a task parked in a read
    // keeps (and the executor's and interceptors' before it) were most of the gateway's
    // memory per stream. The transport still picks the replica, consults its breaker and
    // resets an abandoned stream; what the client interceptors add (request id, trace
    // context) is in `metadata` already. No deadline: a watch lasts as long as the browser
    // stays, up to the service's own limit for watches (24 h).
    self.start = { client, descriptor, metadata, onMessage, onEnd in
      let payload: FramedBytes = try ProtobufSerializer<Request>().serialize(request)
      let deserializer = ProtobufDeserializer<Response>()
      let ending = OnlyOnce()
      let watch = try await client.transport.watch(descriptor: descriptor, metadata: metadata, request: payload) { event in
        switch event {
        case .message(let bytes):
          do {
            let message = try deserializer.deserialize(bytes)
            onMessage(message, eventID(message))
          } catch {
            // A message we can't read ends the stream, as GRPCCore would end the call.
            if ending.claim() {
              onEnd(RPCError(code: .internalError, message: "unreadable \(Response.protoMessageName) from the service: \(error)"))
            }
          }
        case .ended(let error):
          if ending.claim() { onEnd(error) }
        }
      }
      return watch
    }
  }
}

/// True for the first `claim()` only.
final class OnlyOnce: Sendable {
  private let claimed = Mutex(false)
  func claim() -> Bool {
    self.claimed.withLock { claimed in
      defer { claimed = true }
      return !claimed
    }
  }
}
