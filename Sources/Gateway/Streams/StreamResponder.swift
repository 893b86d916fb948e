import Foundation
import FramedTransport
import GRPCCore
import Hummingbird
import NIOCore
import ServiceKit
import ServiceLifecycle
import SwiftProtobuf

/// Answers the server-streaming routes (`StreamRoute`) as Server-Sent Events, or NDJSON when the
/// client asks for `application/x-ndjson`. The status and headers wait for the RPC's first
/// message: an RPC that fails before it (an unknown quiz) is the usual JSON error with its
/// status, since nothing has been sent yet. After that the RPC's end is the last event.
struct StreamResponder: Sendable {
  enum Format: Sendable {
    case eventStream
    case ndjson
  }

  let upstreams: Upstreams
  /// How often an idle stream writes a comment, so proxies and browsers keep it open and a
  /// client that went away is noticed (the write fails) and its RPC cancelled.
  let heartbeats: Heartbeats

  /// The Play socket's plain-HTTP side and its tickets (`PlayRoutes`); nil: not served.
  var play: PlayEndpoints? = nil

  init(upstreams: Upstreams, heartbeat: Duration, play: PlayEndpoints? = nil) {
    self.upstreams = upstreams
    self.heartbeats = Heartbeats(interval: heartbeat)
    self.play = play
  }

  static let lastEventIDHeader = GatewayResponder.FieldName("Last-Event-ID")!

  /// The stream route's response, or nil when `request` is for no stream route.
  func response(to request: Request, requestID: String, forwardedFor: String?) async throws -> Response? {
    if let play = self.play, let answered = try await play.response(to: request, requestID: requestID) { return answered }
    guard let opening = try self.opening(request, requestID: requestID, forwardedFor: forwardedFor) else { return nil }
    return try await self.open(opening, requestID: requestID)
  }

  /// What a stream needs once the request has been read: kept apart from the request so the
  /// open stream's async frames (which its connection's task keeps) hold no more than this.
  struct Opening: Sendable {
    var descriptor: MethodDescriptor
    var call: StreamCall
    var client: ServiceClient
    var metadata: Metadata
    var format: Format
    var resumeAfter: Int64?
  }

  /// The stream route's call for `request`, nil when it is for no stream route.
  func opening(_ request: Request, requestID: String, forwardedFor: String?) throws -> Opening? {
    guard let (route, bindings) = StreamRoute.match(path: request.uri.path) else { return nil }
    guard request.method == .get else {
      var error = APIError.gateway(405, "\(request.method.rawValue) is not allowed on \(request.uri.path); allowed: GET")
      error.headers["Allow"] = "GET"
      throw error
    }
    let query = request.uri.queryParameters.map { (String($0.key), String($0.value)) }
    let call = try route.bind(bindings, query)
    let resumeAfter = request.headers[Self.lastEventIDHeader].flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }
    let format: Format = request.headers[.accept]?.lowercased().contains("application/x-ndjson") == true ? .ndjson : .eventStream
    guard let client = self.upstreams.clients[Upstreams.shortName(of: route.descriptor.service.fullyQualifiedService)] else {
      throw RPCError(code: .unavailable, message: "no upstream configured for \(route.descriptor.service)")
    }

    // The credentials and request id, as the unary routes send them (the services decide).
    var metadata = GatewayResponder.callMetadata(request.headers, requestID: requestID, forwardedFor: forwardedFor)
    // The caller's trace goes on as it came (the stream's call skips the client interceptors).
    for name in ["traceparent", "tracestate"] {
      if let field = GatewayResponder.FieldName(name), let value = request.headers[field] { metadata.addString(value, forKey: name) }
    }
    return Opening(descriptor: route.descriptor, call: call, client: client, metadata: metadata, format: format, resumeAfter: resumeAfter)
  }

  private func open(_ opening: Opening, requestID: String) async throws -> Response {
    let (call, client, descriptor, metadata, format, resumeAfter) = (
      opening.call, opening.client, opening.descriptor, opening.metadata, opening.format, opening.resumeAfter
    )
    let mailbox = StreamMailbox()
    // No task of ours reads the call: the transport hands each message to the mailbox.
    let rpc = try await call.start(client, descriptor, metadata, { message, id in mailbox.post(message, id: id) }, { mailbox.close($0) })
    let failure: (any Error)?
    do { failure = try await mailbox.waitForStart() } catch {
      rpc.cancel()
      throw error
    }
    if let failure {
      rpc.cancel()
      throw failure
    }

    let headers: HTTPFields = [
      GatewayResponder.requestIDHeader: requestID, .contentType: format == .ndjson ? "application/x-ndjson" : "text/event-stream",
      .cacheControl: "no-store",
    ]
    let heartbeats = self.heartbeats
    // If the client goes away before the head is written, Hummingbird drops the response
    // without running its body: the lease, held only by the body, then ends the watch.
    let lease = WatchLease(rpc)
    return Response(
      status: .ok, headers: headers,
      body: ResponseBody { writer in
        heartbeats.add(mailbox)
        // However the body ends (the RPC ended, the client went away and a write failed, or
        // the server cancelled this task), the RPC and the heartbeats end with it.
        defer {
          heartbeats.remove(mailbox)
          rpc.cancel()
          withExtendedLifetime(lease) {}
        }
        // A draining gateway ends its streams with a last `error` (UNAVAILABLE: reconnect,
        // to another replica) instead of holding its shutdown for as long as browsers stay.
        try await withGracefulShutdownHandler {
          try await withTaskCancellationHandler {
            try await Self.pump(mailbox, format: format, resumeAfter: resumeAfter) { try await writer.write(ByteBuffer(string: $0)) }
          } onCancel: {
            rpc.cancel()
          }
        } onGracefulShutdown: {
          mailbox.close(RPCError(code: .unavailable, message: "the gateway is shutting down; reconnect"))
          rpc.cancel()
        }
        try await writer.finish(nil)
      })
  }

  /// Writes what the mailbox holds until the RPC's end has been written (through `write`, so
  /// tests can read it without a socket).
  static func pump(
    _ mailbox: StreamMailbox, format: Format, resumeAfter: Int64?, write: (String) async throws -> Void
  ) async throws {
    var wakeups = mailbox.makeIterator()
    var last = resumeAfter ?? Int64.min
    while true {
      for item in mailbox.take() {
        switch item {
        case .message(let message, let id):
          // A resumed client has seen everything up to `Last-Event-ID`.
          guard id > last else { continue }
          last = id
          try await write(try Self.event(message, id: id, format: format))
        case .ping:
          try await write(format == .ndjson ? "\n" : ": ping\n\n")
        case .end(let failure):
          if let text = Self.end(failure, format: format) { try await write(text) }
          return
        }
      }
      guard await mailbox.next(&wakeups) else { throw CancellationError() }
    }
  }

  static func event(_ message: any SwiftProtobuf.Message, id: Int64, format: Format) throws -> String {
    // Canonical protobuf JSON is one line: newlines inside strings are escaped.
    let json = try message.jsonString()
    switch format {
    case .eventStream: return "id: \(id)\nevent: snapshot\ndata: \(json)\n\n"
    case .ndjson: return json + "\n"
    }
  }

  /// The last event: `end`, or `error` with the envelope's `error` object. NDJSON just ends
  /// after its last line on OK, and has `{"error": …}` as its last line otherwise.
  static func end(_ failure: (any Error)?, format: Format) -> String? {
    guard let failure else { return format == .ndjson ? nil : "event: end\ndata: {}\n\n" }
    let error: APIError
    switch failure {
    case let failure as APIError: error = failure
    case let failure as RPCError: error = .from(failure)
    default: error = .from(RPCError(code: .internalError, message: "\(failure)"))
    }
    let json = Envelope.serialize(error.jsonObject)
    switch format {
    case .eventStream: return "event: error\ndata: \(json)\n\n"
    case .ndjson: return Envelope.serialize(["error": error.jsonObject]) + "\n"
    }
  }
}

/// Ends a watch when the last holder lets go of it (`FramedWatch.cancel` is idempotent, so a
/// watch the body already ended is left as it is).
final class WatchLease: Sendable {
  private let watch: FramedWatch
  init(_ watch: FramedWatch) { self.watch = watch }
  deinit { self.watch.cancel() }
}
