import NIOCore
import WireProtos
import XCTest

@testable import FramedWire

/// Builders for the event-by-event state machine tests.
enum Machine {
  static let now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

  /// A server past its handshake; `peer` are the client's SETTINGS.
  static func server(_ local: ConnectionSettings = ConnectionSettings(), peer: [SettingsEntry] = []) -> ConnectionStateMachine {
    var m = ConnectionStateMachine(role: .server, localSettings: local)
    precondition(m.receivePreface() == .accepted)
    precondition(m.receiveSettings(peer) == .ready)
    return m
  }

  /// A client past its handshake; `peer` are the server's SETTINGS.
  static func client(_ local: ConnectionSettings = ConnectionSettings(), peer: [SettingsEntry] = []) -> ConnectionStateMachine {
    var m = ConnectionStateMachine(role: .client, localSettings: local)
    precondition(m.receivePreface() == .accepted)
    precondition(m.receiveSettings(peer) == .ready)
    return m
  }

  static func request(_ method: String = "/svc/Method") -> ByteBuffer {
    var h = RequestHeaders()
    h.method = method
    return ByteBuffer(bytes: try! h.serializedBytes() as [UInt8])
  }

  static func response() -> ByteBuffer {
    var h = ResponseHeaders()
    h.messageEncoding = "identity"
    return ByteBuffer(bytes: try! h.serializedBytes() as [UInt8])
  }

  static func trailers(code: UInt32 = 0, message: String = "") -> ByteBuffer {
    var t = Trailers()
    t.code = code
    t.message = message
    return ByteBuffer(bytes: try! t.serializedBytes() as [UInt8])
  }

  static func bytes(_ count: Int, _ value: UInt8 = 7) -> ByteBuffer { ByteBuffer(repeating: value, count: count) }

  /// Server: opens request stream `id` (ids must be consecutive).
  static func open(_ m: inout ConnectionStateMachine, _ id: UInt32, endStream: Bool = false) {
    guard case .request = m.receiveHeaders(streamID: id, endStream: endStream, payload: request()) else {
      preconditionFailure("stream \(id) did not open")
    }
  }

  /// Client: opens a call and receives its response HEADERS.
  static func call(_ m: inout ConnectionStateMachine, responded: Bool = true) -> UInt32 {
    let id = try! m.openStream().get()
    if responded {
      guard case .response = m.receiveHeaders(streamID: id, endStream: false, payload: response()) else {
        preconditionFailure("no response headers on \(id)")
      }
    }
    return id
  }

  /// What one write pass puts on the wire, decoded, and its events.
  static func written(_ m: inout ConnectionStateMachine, limit: Int = 1 << 30) -> (frames: [Frame], events: [ConnectionStateMachine.SendEvent]) {
    var buffer = ByteBuffer()
    var events: [ConnectionStateMachine.SendEvent] = []
    m.writePending(into: &buffer, byteLimit: limit, events: &events)
    var settings = ConnectionSettings()
    settings.maxFrameSize = WireLimits.maxFrameSizeCap
    var decoder = FrameDecoder(settings: settings, expectPreface: false)
    var frames: [Frame] = []
    while case .frame(let f)? = try! decoder.decode(&buffer) { frames.append(f) }
    return (frames, events)
  }

  /// The GOAWAY code of a connection failure.
  static func goAwayCode(_ failure: ConnectionFailure) -> WireErrorCode? {
    guard case .goAway(_, let code, _)? = failure.goAway else { return nil }
    return code
  }
}

extension ConnectionStateMachine.HeadersResult {
  var connectionFailure: ConnectionFailure? {
    if case .connectionError(let f) = self { return f }
    return nil
  }
}

extension ConnectionStateMachine.MessageResult {
  var connectionFailure: ConnectionFailure? {
    if case .connectionError(let f) = self { return f }
    return nil
  }
  var streamFailure: StreamFailure? {
    if case .streamError(let f) = self { return f }
    return nil
  }
}
