import Foundation
import GRPCCore
import GRPCProtobuf
import HummingbirdWebSocket
import NIOWebSocket
import QuizwireProtos
import ServiceKit
import SwiftProtobuf
import Synchronization

/// How a Play socket ends: the close frame's code and reason.
struct PlayClose: Error, Sendable, Equatable {
  var code: WebSocketErrorCode
  var reason: String

  /// The RPC ended OK: the last text frame before this one carried `finished`.
  static let finished = PlayClose(code: .normalClosure, reason: "finished")

  static func policy(_ reason: String) -> PlayClose { PlayClose(code: .policyViolation, reason: reason) }

  /// A browser frame that is not a `PlayRequest`: 4003 (4000 + INVALID_ARGUMENT), the code
  /// an RPC refusing the same request gets, so a page handles one code for "my message was
  /// wrong" whether the gateway or the service noticed. 1007 stays what RFC 6455 makes it:
  /// text that is not UTF-8 (the WebSocket layer sends that one itself).
  static func invalidFrame(_ reason: String) -> PlayClose { PlayClose(code: .init(codeNumber: 4000 + RPCError.Code.invalidArgument.rawValue), reason: reason) }

  /// 4000 + the gRPC status code, the status message as the reason; INTERNAL is 1011.
  static func rpc(_ error: RPCError) -> PlayClose {
    if error.code == .internalError { return PlayClose(code: .unexpectedServerError, reason: error.message) }
    return PlayClose(code: .init(codeNumber: 4000 + error.code.rawValue), reason: error.message)
  }

  /// A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5: 125 minus the code); cut
  /// on a character boundary.
  var truncatedReason: String {
    guard self.reason.utf8.count > 123 else { return self.reason }
    var result = ""
    for character in self.reason {
      guard result.utf8.count + String(character).utf8.count <= 123 else { break }
      result.append(character)
    }
    return result
  }
}

/// What the Play sockets of one gateway hold right now, for `/metrics` and the backpressure
/// test: the bridge writes one response frame at a time, so frames in flight never exceed
/// the number of open sockets.
public final class PlaySocketStats: Sendable {
  private let open = Atomic<Int>(0)
  private let inFlight = Atomic<Int>(0)
  private let inFlightBytes = Atomic<Int>(0)
  private let maxInFlightSeen = Atomic<Int>(0)
  private let sent = Atomic<Int>(0)

  public init() {}

  /// Sockets bridged to a Play RPC now.
  public var openSockets: Int { self.open.load(ordering: .relaxed) }
  /// Response frames taken from an RPC and not yet accepted by their socket.
  public var framesInFlight: Int { self.inFlight.load(ordering: .relaxed) }
  /// Their bytes.
  public var bytesInFlight: Int { self.inFlightBytes.load(ordering: .relaxed) }
  /// The most frames ever in flight at once, across all sockets.
  public var maxFramesInFlight: Int { self.maxInFlightSeen.load(ordering: .relaxed) }
  /// Response frames written to sockets, in total.
  public var framesSent: Int { self.sent.load(ordering: .relaxed) }

  func socketOpened() { self.open.add(1, ordering: .relaxed) }
  func socketClosed() { self.open.subtract(1, ordering: .relaxed) }

  func writing(_ bytes: Int) {
    let now = self.inFlight.add(1, ordering: .relaxed).newValue
    self.inFlightBytes.add(bytes, ordering: .relaxed)
    var seen = self.maxInFlightSeen.load(ordering: .relaxed)
    while now > seen {
      let (exchanged, original) = self.maxInFlightSeen.compareExchange(expected: seen, desired: now, ordering: .relaxed)
      if exchanged { break }
      seen = original
    }
  }

  func written(_ bytes: Int, delivered: Bool) {
    self.inFlight.subtract(1, ordering: .relaxed)
    self.inFlightBytes.subtract(bytes, ordering: .relaxed)
    if delivered { self.sent.add(1, ordering: .relaxed) }
  }
}

/// Bridges one WebSocket to one `scoring.v1.ScoringService/Play` call: each browser text frame
/// is a `PlayRequest` in canonical JSON, each `PlayEvent` goes out as one text frame.
///
/// Backpressure both ways without a queue of its own: a response is taken from the RPC only
/// after the previous frame was accepted by the socket (whose writer suspends while the
/// channel is over its write-buffer high-water mark), so a browser that stops reading stops
/// the reads from the RPC and, through the wire's flow-control windows, the service's writes.
/// A request is read from the browser only when the RPC's writer has taken the one before.
struct PlayBridge: Sendable {
  let client: ServiceClient
  let schema: MessageSchema
  let stats: PlaySocketStats
  /// The largest browser message accepted (a `PlayRequest` is small).
  static let maxMessageSize = 64 << 10

  /// A play lasts as long as the browser stays, up to the service's own limit for Play;
  /// without this the client's default deadline for every call (10 s) would end it.
  static let options: CallOptions = {
    var options = CallOptions.defaults
    options.timeout = .seconds(24 * 3600)
    return options
  }()

  /// Runs the socket until the RPC ends, the browser goes away or sends a bad frame; returns
  /// how to close the socket (nil: the browser is gone, there is nobody to tell).
  func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, metadata: Metadata) async -> PlayClose? {
    self.stats.socketOpened()
    defer { self.stats.socketClosed() }
    // The first decision wins: a bad frame or a gone browser is recorded before the RPC is
    // ended for it, so the RPC's resulting CANCELLED is not mistaken for the reason.
    let verdict = Verdict()
    let schema = self.schema
    // The first message is read and checked before the call starts: a socket whose first
    // frame is bad, or that leaves before sending one, never costs the service a call.
    let messages = Messages(inbound.messages(maxSize: Self.maxMessageSize).makeAsyncIterator())
    let first: Scoring_V1_PlayRequest
    do {
      guard let message = try await messages.next() else { return nil }
      switch Self.decode(message, schema: schema) {
      case .success(let request): first = request
      case .failure(let close): return close
      }
    } catch {
      // The WebSocket layer already closed the socket (a protocol error) or lost it.
      return nil
    }
    let (stops, stop) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    let request = StreamingClientRequest<Scoring_V1_PlayRequest>(metadata: metadata) { writer in
      try await writer.write(first)
      while let message = try await messages.next() {
        switch Self.decode(message, schema: schema) {
        case .success(let request): try await writer.write(request)
        case .failure(let close):
          verdict.decide(close)
          stop.yield()
          throw CancellationError()
        }
      }
      // Cancelled: the RPC ended first and the call stops reading the browser.
      if Task.isCancelled { return }
      // The browser closed or went away: the RPC is cancelled, not half-closed (nobody would
      // read what it says next).
      verdict.decide(nil)
      stop.yield()
      throw CancellationError()
    }
    // The producer can't end the call it belongs to; it says so here, and the task group
    // below cancels the call (a bad frame, a gone browser) however far along the RPC is.
    return await withTaskGroup(of: PlayClose??.self) { group in
      group.addTask {
        await self.call(request, outbound: outbound, verdict: verdict)
      }
      group.addTask {
        for await _ in stops { return .none }
        return .none
      }
      let first = await group.next() ?? nil
      group.cancelAll()
      stop.finish()
      if let decided = verdict.decided { return decided }
      return first ?? nil
    }
  }

  private func call(
    _ request: StreamingClientRequest<Scoring_V1_PlayRequest>, outbound: WebSocketOutboundWriter, verdict: Verdict
  ) async -> PlayClose?? {
    let stats = self.stats
    do {
      try await self.client.client.bidirectionalStreaming(
        request: request, descriptor: Scoring_V1_ScoringService.Method.Play.descriptor,
        serializer: ProtobufSerializer<Scoring_V1_PlayRequest>(), deserializer: ProtobufDeserializer<Scoring_V1_PlayEvent>(),
        options: Self.options
      ) { response in
        for try await event in response.messages {
          let json = try event.jsonString()
          let bytes = json.utf8.count
          stats.writing(bytes)
          do {
            try await outbound.write(.text(json))
          } catch {
            stats.written(bytes, delivered: false)
            verdict.decide(nil)
            throw error
          }
          stats.written(bytes, delivered: true)
        }
      }
      return .some(.finished)
    } catch let error as RPCError {
      return .some(.rpc(error))
    } catch {
      return .some(PlayClose(code: .unexpectedServerError, reason: "the play stream failed"))
    }
  }

  /// The browser's messages. `@unchecked Sendable` because the iterator is not Sendable, and
  /// safe because it is only ever used by one task at a time: `run` reads the first message
  /// before the call starts, and only then does the call's request producer read the rest.
  final class Messages: @unchecked Sendable {
    private var iterator: WebSocketInboundMessageStream.AsyncIterator
    init(_ iterator: WebSocketInboundMessageStream.AsyncIterator) { self.iterator = iterator }
    func next() async throws -> WebSocketMessage? { try await self.iterator.next() }
  }

  /// The first decision on how the socket ends; nil inside: the browser is gone.
  final class Verdict: Sendable {
    private let state = Mutex<PlayClose??>(nil)
    func decide(_ close: PlayClose?) { self.state.withLock { if $0 == nil { $0 = .some(close) } } }
    var decided: PlayClose?? { self.state.withLock { $0 } }
  }

  /// One browser message as a `PlayRequest`, strictly: text only, JSON, no unknown fields or
  /// wrong types (checked field by field, as request bodies are).
  static func decode(_ message: WebSocketMessage, schema: MessageSchema) -> Result<Scoring_V1_PlayRequest, PlayClose> {
    guard case .text(let text) = message else {
      return .failure(PlayClose(code: .unacceptableData, reason: "binary frames are not accepted: send each PlayRequest as JSON text"))
    }
    let value: JSONValue
    do { value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) } catch {
      return .failure(.invalidFrame("invalid PlayRequest: malformed JSON"))
    }
    var violations: [APIError.FieldViolation] = []
    BodyChecker(schema: schema).check(value, message: Scoring_V1_PlayRequest.protoMessageName, path: "", into: &violations)
    guard violations.isEmpty else {
      return .failure(.invalidFrame("invalid PlayRequest: " + violations.map { "\($0.field): \($0.description)" }.joined(separator: "; ")))
    }
    do { return .success(try Scoring_V1_PlayRequest(jsonString: text)) } catch {
      return .failure(.invalidFrame("invalid PlayRequest: \(error)"))
    }
  }
}
