import DequeModule
import NIOCore

extension ConnectionStateMachine {
  /// Why a new stream can't be opened right now.
  package enum OpenFailure: Error, Sendable, Equatable {
    /// The connection is draining or failed: try another connection.
    case goingAway
    /// The peer's MAX_CONCURRENT_STREAMS is reached.
    case tooManyStreams(limit: Int)
    /// All 2^31 stream ids are used: reconnect.
    case streamIDsExhausted
  }

  /// Progress the handler reports to calls after a write pass.
  package enum SendEvent: Sendable, Equatable {
    /// `bytes` of a queued message for this stream were written.
    case sent(streamID: UInt32, bytes: Int)
    /// That message's last fragment was written: it left the queue (follows its `.sent`).
    case messageDone(streamID: UInt32)
    /// This stream's last frame (TRAILERS, or a client's END_STREAM after TRAILERS were seen) left.
    case closed(streamID: UInt32)
  }

  /// Client: allocates the next stream id and registers the stream (HEADERS are sent by the caller).
  package mutating func openStream(endStream: Bool = false) -> Result<UInt32, OpenFailure> {
    precondition(self.role == .client)
    guard !self.isGoingAway else { return .failure(.goingAway) }
    guard self.streams.count < self.peerSettings.maxConcurrentStreams else {
      return .failure(.tooManyStreams(limit: self.peerSettings.maxConcurrentStreams))
    }
    let id = self.highestStreamID == 0 ? 1 : self.highestStreamID + 2
    guard id <= WireLimits.maxStreamID else { return .failure(.streamIDsExhausted) }
    self.highestStreamID = id
    var stream = self.makeStream(id)
    if endStream { stream.phase.closeLocal() }
    self.streams[id] = stream
    return .success(id)
  }

  /// Server: records that response HEADERS go out now. `false` if the stream is gone.
  package mutating func sendResponseHeaders(streamID id: UInt32) -> Bool {
    guard self.streams[id]?.phase.isLocalClosed == false, var stream = self.streams.removeValue(forKey: id) else { return false }
    stream.phase.exchangeHeaders()
    self.streams[id] = stream
    return true
  }

  /// Queues output after whatever the stream has queued: a message (already compressed if
  /// its flag says so), a client's half-close, or a server's TRAILERS. Each of the last two,
  /// and a message with END_STREAM, closes our half. `false` if the stream is gone or our half
  /// already closed.
  package mutating func queue(_ send: PendingSend.Kind, streamID id: UInt32) -> Bool {
    guard self.streams[id]?.phase.isLocalClosed == false, var stream = self.streams.removeValue(forKey: id) else { return false }
    let item = PendingSend(send)
    if item.closesLocal { stream.phase.closeLocal() }
    stream.pending.append(item)
    self.streams[id] = stream
    self.schedule(id)
    return true
  }

  /// Resets a stream from our side (cancel, deadline, local error). Returns the RST to write,
  /// or `nil` if the stream was already gone.
  package mutating func resetStream(streamID id: UInt32, code: WireErrorCode) -> Frame? {
    guard self.streams.removeValue(forKey: id) != nil else { return nil }
    self.ready.removeAll { $0 == id }
    return .rst(streamID: id, code: code)
  }

  /// Whether `id` is in the middle of writing a message (see `StreamState.midMessage`).
  package func isMidMessage(streamID id: UInt32) -> Bool { self.streams[id]?.midMessage ?? false }

  /// The application consumed a message worth `credit` bytes: maybe return stream credit.
  package mutating func consumed(streamID id: UInt32, credit: Int) -> Frame? {
    guard self.streams[id]?.phase.isRemoteClosed == false, var stream = self.streams.removeValue(forKey: id) else { return nil }
    stream.unconsumedCredit = max(0, stream.unconsumedCredit - credit)
    var released = credit
    if stream.unconsumedCredit == 0 {
      released += stream.heldFragmentCredit
      stream.heldFragmentCredit = 0
    }
    let inc = stream.receiveWindow.release(released)
    self.streams[id] = stream
    return inc.map { .windowUpdate(streamID: id, increment: $0) }
  }

  /// Whether any stream has frames waiting (with or without credit).
  package var hasPendingSends: Bool { !self.ready.isEmpty }

  mutating func schedule(_ id: UInt32) {
    guard let index = self.streams.index(forKey: id) else { return }
    let eligible: Bool = {
      let stream = self.streams.values[index]
      guard !stream.scheduled, let next = stream.pending.first else { return false }
      switch next.kind {
      case .message(let bytes, _, _), .remainder(let bytes, _, _):
        // Waits for its own WINDOW_UPDATE.
        return bytes.readableBytes == 0 || stream.sendWindow > 0
      case .halfClose, .trailers:
        return true
      }
    }()
    guard eligible else { return }
    self.streams.values[index].scheduled = true  // in place
    self.ready.append(id)
  }

  /// Writes pending frames into `buffer`, one frame per stream per turn (round robin), until
  /// nothing can be sent or `buffer` holds `byteLimit` bytes. Control frames never wait here:
  /// the handler writes them directly, ahead of this queue.
  package mutating func writePending(into buffer: inout ByteBuffer, byteLimit: Int, events: inout [SendEvent]) {
    let maxFrame = self.peerSettings.maxFrameSize
    while buffer.readableBytes < byteLimit, let id = self.ready.popFirst() {
      guard var stream = self.streams.removeValue(forKey: id) else { continue }
      stream.scheduled = false
      guard var item = stream.pending.popFirst() else {
        self.streams[id] = stream
        continue
      }
      var streamClosed = false
      switch item.kind {
      case .halfClose:
        FrameEncoder.writeHeader(length: 0, type: FrameType.message.rawValue, flags: [.noMessage, .endStream], streamID: id, into: &buffer)
      case .trailers(let payload):
        FrameEncoder.encode(.trailers(streamID: id, payload: payload), into: &buffer)
        streamClosed = true
      case .message(var bytes, let compressed, let endStream), .remainder(var bytes, let compressed, let endStream):
        let credit = min(stream.sendWindow, self.connectionSendWindow)
        let total = bytes.readableBytes
        if total > 0 && credit <= 0 {
          // Blocked on the connection window: put it back and stop; on the stream window the
          // stream waits for its own WINDOW_UPDATE (schedule() skips it).
          stream.pending.prepend(item)
          self.streams[id] = stream
          if self.connectionSendWindow <= 0 {
            self.schedule(id)
            return
          }
          continue
        }
        let chunk = min(total, maxFrame, max(credit, 0))
        let last = chunk == total
        var flags: FrameFlags = compressed ? .compressed : []
        if !last { flags.insert(.more) }
        if last && endStream { flags.insert(.endStream) }
        FrameEncoder.writeHeader(length: chunk, type: FrameType.message.rawValue, flags: flags, streamID: id, into: &buffer)
        var slice = bytes.readSlice(length: chunk)!
        buffer.writeBuffer(&slice)
        stream.sendWindow -= chunk
        self.connectionSendWindow -= chunk
        events.append(.sent(streamID: id, bytes: chunk))
        if last {
          events.append(.messageDone(streamID: id))
        } else {
          item.kind = .remainder(bytes, compressed: compressed, endStream: endStream)
          stream.pending.prepend(item)
        }
      }
      self.streams[id] = stream
      if streamClosed || stream.isDone {
        // Server after TRAILERS: later client frames on this id are dropped.
        if self.role == .server || stream.phase.isRemoteClosed {
          self.streams.removeValue(forKey: id)
          events.append(.closed(streamID: id))
          continue
        }
      }
      self.schedule(id)
    }
  }

  /// The connection is gone: frees every queued frame now, rather than whenever the last
  /// reference to the connection goes.
  package mutating func discardQueuedSends() {
    self.streams.removeAll()
    self.ready.removeAll()
  }

  // MARK: - Drain

  /// Server, phase one of a graceful drain: "no new streams soon" plus a PING to time it.
  package mutating func beginDrain(pingOpaque: UInt64) -> [Frame] {
    guard self.localGoAway == .none else { return [] }
    self.localGoAway = .draining
    return [.goAway(lastStreamID: WireLimits.maxStreamID, code: .noError, debug: "draining"), .ping(ack: false, opaque: pingOpaque)]
  }

  /// Phase two: the final GOAWAY naming the last stream we will process; nil if a final
  /// GOAWAY already went out.
  package mutating func finishDrain() -> Frame? {
    if case .sent = self.localGoAway { return nil }
    let last = self.role == .server ? self.highestStreamID : 0
    self.localGoAway = .sent(lastStreamID: last)
    return .goAway(lastStreamID: last, code: .noError, debug: "draining")
  }

  /// Client: closing an idle connection politely.
  package mutating func closeGracefully() -> Frame {
    self.localGoAway = .sent(lastStreamID: 0)
    return .goAway(lastStreamID: 0, code: .noError, debug: "client closing")
  }
}
