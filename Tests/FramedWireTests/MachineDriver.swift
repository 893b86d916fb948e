import NIOCore
import WireProtos

@testable import FramedWire

/// Feeds decoded items to a state machine the way the connection handler does (one event per
/// frame type) and folds each event's result into one summary, for the tests that drive a
/// machine with mixed frame sequences (simulation, fuzzing, vectors). Tests of a single event
/// use that event's own result type (`ConnectionStateMachineEventTests`).
enum Outcome: Equatable {
  case none
  case ready
  case write([Frame])
  case requestHeaders(streamID: UInt32, RequestHeaders, endStream: Bool)
  case responseHeaders(streamID: UInt32, ResponseHeaders)
  case message(streamID: UInt32, ByteBuffer, compressed: Bool, credit: Int, endStream: Bool, alsoWrite: [Frame])
  case endOfRequest(streamID: UInt32)
  case trailers(streamID: UInt32, Trailers)
  case peerReset(streamID: UInt32, code: WireErrorCode)
  case streamFailed(streamID: UInt32, StreamError, write: [Frame])
  case messageTooLarge(streamID: UInt32, size: Int, alsoWrite: [Frame])
  case pingAck(opaque: UInt64)
  case goAway(lastStreamID: UInt32, code: WireErrorCode, debug: String, refusedStreams: [UInt32])
  case holdingFragmentCredit(streamID: UInt32, alsoWrite: [Frame])
  case windowOpened
  case connectionError(ConnectionError, write: Frame?)

  init(_ failure: ConnectionFailure) { self = .connectionError(failure.error, write: failure.goAway) }
  init(_ failure: StreamFailure) { self = .streamFailed(streamID: failure.streamID, failure.error, write: failure.write) }
  /// Frames to write, or nothing.
  init(writing frames: [Frame]) { self = frames.isEmpty ? .none : .write(frames) }
}

extension ConnectionStateMachine {
  mutating func receive(_ item: DecodedItem, now: NIODeadline) -> Outcome {
    guard case .frame(let frame) = item else {
      switch self.receivePreface() {
      case .accepted: return .none
      case .connectionError(let f): return Outcome(f)
      }
    }
    switch frame {
    case .settings(let entries):
      switch self.receiveSettings(entries) {
      case .ready: return .ready
      case .connectionError(let f): return Outcome(f)
      }
    case .ping(let ack, let opaque):
      switch self.receivePing(ack: ack, opaque: opaque, now: now) {
      case .reply(let frame): return .write([frame])
      case .acknowledged(let opaque): return .pingAck(opaque: opaque)
      case .connectionError(let f): return Outcome(f)
      }
    case .goAway(let last, let code, let debug):
      switch self.receiveGoAway(lastStreamID: last, code: code, debug: debug) {
      case .goingAway(let last, let code, let debug, let refused): return .goAway(lastStreamID: last, code: code, debug: debug, refusedStreams: refused)
      case .connectionError(let f): return Outcome(f)
      }
    case .windowUpdate(let id, let increment):
      switch self.receiveWindowUpdate(streamID: id, increment: increment) {
      case .windowOpened: return .windowOpened
      case .ignored: return .none
      case .streamError(let f): return Outcome(f)
      case .connectionError(let f): return Outcome(f)
      }
    case .unknownExtension:
      return self.receiveExtension().map(Outcome.init) ?? .none
    case .headers(let id, let endStream, let payload):
      switch self.receiveHeaders(streamID: id, endStream: endStream, payload: payload) {
      case .request(let id, let h, let end): return .requestHeaders(streamID: id, h, endStream: end)
      case .response(let id, let h): return .responseHeaders(streamID: id, h)
      case .refused(let rst): return .write([rst])
      case .ignored: return .none
      case .streamError(let f): return Outcome(f)
      case .connectionError(let f): return Outcome(f)
      }
    case .message(let id, let flags, let payload):
      switch self.receiveMessage(streamID: id, flags: flags, payload: payload) {
      case .buffered(let write): return Outcome(writing: write)
      case .message(let m, let write):
        return .message(streamID: m.streamID, m.bytes, compressed: m.compressed, credit: m.credit, endStream: m.endStream, alsoWrite: write)
      case .endOfRequest(let id, _): return .endOfRequest(streamID: id)
      case .holdingCredit(let id, let write): return .holdingFragmentCredit(streamID: id, alsoWrite: write)
      case .tooLarge(let id, let size, let write): return .messageTooLarge(streamID: id, size: size, alsoWrite: write)
      case .streamError(let f): return Outcome(f)
      case .connectionError(let f): return Outcome(f)
      }
    case .trailers(let id, let payload):
      switch self.receiveTrailers(streamID: id, payload: payload) {
      case .trailers(let id, let t): return .trailers(streamID: id, t)
      case .ignored: return .none
      case .connectionError(let f): return Outcome(f)
      }
    case .rst(let id, let code):
      switch self.receiveReset(streamID: id, code: code) {
      case .reset(let id, let code): return .peerReset(streamID: id, code: code)
      case .ignored: return .none
      case .connectionError(let f): return Outcome(f)
      }
    }
  }
}
