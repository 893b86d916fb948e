import FramedWire
import GRPCCore
import NIOCore
import WireProtos

/// Shared message path of both writers: size check against the peer's limit (fail fast, with a
/// clear text — the receiver would refuse it anyway), optional compression, back-pressure.
struct MessageSender {
  let peerMaxMessageSize: Int
  let encoding: MessageEncoding
  let compressionMinBytes: Int

  func send<Inbound>(_ bytes: FramedBytes, on stream: FramedStream<Inbound>, endStream: Bool = false) async throws {
    let size = bytes.count
    guard size <= self.peerMaxMessageSize else {
      throw RPCError(
        code: .resourceExhausted,
        message: "message of \(size) bytes exceeds the peer's limit of \(self.peerMaxMessageSize) bytes (MAX_MESSAGE_SIZE)")
    }
    var payload = bytes.buffer
    var compressed = false
    if self.encoding != .identity, size >= self.compressionMinBytes, let c = self.encoding.compress(payload) {
      payload = c
      compressed = true
    }
    let (cost, listedAt) = try stream.willQueue(WriteBudget.cost(message: payload.readableBytes))
    let admission = stream.connection.sendMessage(
      .message(stream, payload, compressed: compressed, endStream: endStream), cost: cost, listedAt: listedAt)
    guard admission != .closed else {
      stream.sent(cost)
      let error = stream.failure ?? RPCError(code: .unavailable, message: "connection closed")
      stream.fail(error)  // the reader must not wait for a response that cannot come
      throw error
    }
    try await stream.waitUntilWritable(admission)
  }
}

/// The server's response writer for one call.
struct ServerStreamWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCResponsePart<FramedBytes>
  let stream: FramedStream<RPCRequestPart<FramedBytes>>
  let encoding: MessageEncoding
  let sender: MessageSender

  init(stream: FramedStream<RPCRequestPart<FramedBytes>>, encoding: MessageEncoding, peerMaxMessageSize: Int, compressionMinBytes: Int) {
    self.stream = stream
    self.encoding = encoding
    // `encoding` is the request's when the client accepts it, else identity (see
    // `openServerStream`): responses are compressed only when the request was.
    self.sender = MessageSender(peerMaxMessageSize: peerMaxMessageSize, encoding: encoding, compressionMinBytes: compressionMinBytes)
  }

  func write(_ element: Element) async throws {
    switch element {
    case .metadata(let metadata):
      var headers = ResponseHeaders()
      // A bad key throws before anything is sent; GRPCCore then answers with this error as
      // the call's status (trailers-only).
      headers.metadata = try WireMapping.wireEntries(metadata)
      if self.encoding != .identity { headers.messageEncoding = self.encoding.rawValue }
      // A call that already ended (reset, deadline, connection gone) drops its response
      // headers instead of throwing, as GRPCCore's in-process transport does: GRPCCore runs
      // the response producer only after this write succeeded, and interceptors that wrap the
      // producer (ServiceKit's CallObservation: the in-flight gauge, access log, spans) would
      // otherwise never see the call end. The producer sees the failure at its first read or
      // write, and its task is cancelled already.
      guard self.stream.failure == nil else { return }
      if !self.stream.connection.send(.responseHeaders(self.stream, WireMapping.encode(headers))) {
        self.stream.fail(RPCError(code: .cancelled, message: "connection closed"))
      }
    case .message(let bytes):
      try await self.sender.send(bytes, on: self.stream)
    case .status(let status, let metadata):
      let trailers = WireMapping.trailers(status: status, metadata: metadata)
      try self.command(.trailers(self.stream, WireMapping.encode(trailers)))
    }
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for e in elements { try await self.write(e) }
  }

  private func command(_ c: StreamCommand) throws {
    if let error = self.stream.failure { throw error }
    guard self.stream.connection.send(c) else {
      let error = RPCError(code: .cancelled, message: "connection closed")
      self.stream.fail(error)
      throw error
    }
  }

  func finish() async {}

  func finish(throwing error: any Error) async {
    // GRPCCore always writes a status first; this is the transport-level bail-out.
    self.stream.connection.send(.reset(self.stream, .internalError))
  }
}

/// The client's request writer for one call.
struct ClientStreamWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCRequestPart<FramedBytes>
  let stream: FramedStream<RPCResponsePart<FramedBytes>>
  let descriptor: MethodDescriptor
  let encoding: MessageEncoding
  /// `FramedClientTransport.callDeadline` when the call started.
  let deadline: ContinuousClock.Instant?
  let sender: MessageSender

  func write(_ element: Element) async throws {
    switch element {
    case .metadata(let metadata):
      var headers: RequestHeaders
      do {
        headers = try WireMapping.requestHeaders(method: self.descriptor, metadata: metadata, encoding: self.encoding)
      } catch {
        self.stream.fail(error)  // nothing was sent; the call ends with this error
        throw error
      }
      var timer: TimeAmount? = nil
      if let deadline = self.deadline {
        let left = TimeAmount(ContinuousClock.now.duration(to: deadline))
        guard left.nanoseconds > 0 else {
          let error = RPCError(code: .deadlineExceeded, message: "the call's deadline passed before it was sent")
          self.stream.fail(error)
          throw error
        }
        // At least 1 µs: 0 would read as "no deadline".
        let us = UInt64(max(1, left.nanoseconds / 1_000))
        if headers.timeoutUs == 0 || us < headers.timeoutUs { headers.timeoutUs = us }
        // The sooner of the two, as the server will enforce it.
        timer = .microseconds(Int64(clamping: headers.timeoutUs))
      }
      if let error = self.stream.failure { throw error }
      guard self.stream.connection.send(.open(self.stream, headers: WireMapping.encode(headers), endStream: false)) else {
        let error = RPCError(code: .unavailable, message: "connection closed before the call started; safe to retry")
        self.stream.fail(error)
        throw error
      }
      // After the open, on the same loop: the timer finds the stream's id.
      if let timer { self.stream.connection.send(.deadline(self.stream, timer)) }
    case .message(let bytes):
      try await self.sender.send(bytes, on: self.stream)
    }
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for e in elements { try await self.write(e) }
  }

  func finish() async {
    self.stream.connection.send(.halfClose(self.stream))
  }

  func finish(throwing error: any Error) async {
    // The call fails with the writer's own error (e.g. a message over the peer's limit), not
    // with the CANCELLED our reset would otherwise produce.
    let rpcError = (error as? RPCError) ?? RPCError(code: .cancelled, message: "request stream failed: \(error)", cause: error)
    self.stream.fail(rpcError)
    self.stream.connection.send(.reset(self.stream, .cancel))
  }
}
