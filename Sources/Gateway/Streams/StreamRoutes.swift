import FramedTransport
import GRPCCore
import GRPCProtobuf
import QuizwireProtos
import ServiceKit
import SwiftProtobuf

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
  let run:
    @Sendable (
      _ client: ServiceClient, _ descriptor: MethodDescriptor, _ metadata: Metadata,
      _ onMessage: @escaping @Sendable (any SwiftProtobuf.Message, Int64) async throws -> Void
    ) async throws -> Void

  /// No deadline: a watch lasts as long as the browser stays, up to the service's own limit
  /// for watches (24 h). `Upstreams` lists the stream methods as untimed, so the client's
  /// default deadline (10 s) doesn't apply either.
  static let options = CallOptions.defaults

  init<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(request: Request, eventID: @escaping @Sendable (Response) -> Int64) {
    // Straight on the framed transport, not through `GRPCClient`: its executor and the
    // client interceptors keep their async frames for as long as a call lasts, which for
    // thousands of open watches was most of the gateway's memory per stream. The transport
    // still picks the replica, consults its breaker and resets an abandoned stream; what the
    // interceptors added (request id, trace context) is in `metadata` already.
    self.run = { client, descriptor, metadata, onMessage in
      let payload: FramedBytes = try ProtobufSerializer<Request>().serialize(request)
      try await client.transport.withStream(descriptor: descriptor, options: Self.options) { stream, _ in
        try await stream.outbound.write(.metadata(metadata))
        try await stream.outbound.write(.message(payload))
        await stream.outbound.finish()
        let deserializer = ProtobufDeserializer<Response>()
        for try await part in stream.inbound {
          switch part {
          case .metadata: continue
          case .message(let bytes):
            let message = try deserializer.deserialize(bytes)
            try await onMessage(message, eventID(message))
          case .status(let status, let trailers):
            if let error = RPCError(status: status, metadata: trailers) { throw error }
            return
          }
        }
        throw RPCError(code: .unavailable, message: "the stream ended without a status")
      }
    }
  }
}
