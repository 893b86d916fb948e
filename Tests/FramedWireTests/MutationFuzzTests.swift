import NIOCore
import XCTest

@testable import FramedWire

/// Feeds 100,000 random and mutated frame sequences to the server side (decoder + connection
/// state machine) and checks that every answer is one the spec allows. Deterministic: a failure
/// names its sequence number and reproduces from the fixed seed.
final class MutationFuzzTests: XCTestCase {
  static let sequences = 100_000

  /// The spec's verdict on a frame header (docs/protocol.md §3.3), written independently of the
  /// decoder: `nil` if the header is acceptable, else the connection error code.
  static func headerVerdict(_ h: [UInt8], maxFrame: Int, maxHeaders: Int) -> WireErrorCode? {
    let length = Int(h[0]) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
    let type = h[4], flags = h[5]
    let stream = UInt32(h[6]) << 24 | UInt32(h[7]) << 16 | UInt32(h[8]) << 8 | UInt32(h[9])
    if stream & 0x8000_0000 != 0 { return .protocolError }
    if type == 0 || (type >= 0x09 && type < 0x80) { return .protocolError }
    let limit = (type == 2 || type == 4) ? maxHeaders : maxFrame
    if length > limit { return .frameSizeError }
    if type >= 0x80 { return nil }
    let allowed: UInt8 = [2: 0x01, 3: 0x0F, 7: 0x01][type] ?? 0
    if flags & ~allowed != 0 { return .protocolError }
    if [1, 7, 8].contains(type), stream != 0 { return .protocolError }
    if [2, 3, 4, 5].contains(type), stream == 0 { return .protocolError }
    switch type {
    case 5, 6: if length != 4 { return .frameSizeError }
    case 7: if length != 8 { return .frameSizeError }
    case 8: if length < 8 || length > 8 + 1024 { return .frameSizeError }
    case 1: if length % 6 != 0 || length / 6 > 32 { return .frameSizeError }
    case 3:
      if flags & 0x04 != 0, flags & 0x01 != 0 || length == 0 { return .protocolError }
      if flags & 0x08 != 0, length != 0 || flags & 0x01 == 0 || flags & 0x06 != 0 { return .protocolError }
    default: break
    }
    return nil
  }

  func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
    var b = ByteBuffer()
    b.writeMultipleIntegers(UInt32(payload.count), type, flags, stream)
    b.writeBytes(payload)
    return Array(b.readableBytesView)
  }

  func testHundredThousandMutatedSequencesOnlyGetSpecAnswers() throws {
    var settings = ConnectionSettings()
    settings.maxConcurrentStreams = 4
    settings.maxMessageSize = 32_768
    settings.initialStreamWindow = 65_536
    settings.initialConnectionWindow = 131_072
    var rng = SplitMix64(seed: 0x5157_4952_4501)
    let headers = Array(WireTest.requestHeaders().readableBytesView)

    var counts: [String: Int] = [:]
    for n in 0..<Self.sequences {
      var bytes: [UInt8] = []
      Preface.magic.forEach { bytes.append($0) }
      bytes += [0, 1]
      bytes += frame(1, 0, 0, [0, 1, 0, 0, 0x40, 0])  // SETTINGS MAX_FRAME_SIZE 16384
      var nextID: UInt32 = 1
      for _ in 0..<Int.random(in: 1...8, using: &rng) {
        var f: [UInt8]
        switch Int.random(in: 0..<16, using: &rng) {
        case 0, 1: f = frame(2, Bool.random(using: &rng) ? 1 : 0, nextID, headers); nextID += 2
        case 2, 3:
          f = frame(
            3, [0, 1, 2, 4][Int.random(in: 0..<4, using: &rng)], (nextID > 2 ? nextID - 2 : 1),
            (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        case 4: f = frame(3, 0x09, (nextID > 2 ? nextID - 2 : 1), [])
        case 5: f = frame(6, 0, Bool.random(using: &rng) ? 0 : (nextID > 2 ? nextID - 2 : 1), [0, 0, UInt8.random(in: 0...255, using: &rng), 1])
        case 6: f = frame(7, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])
        case 7: f = frame(5, 0, (nextID > 2 ? nextID - 2 : 1), [0, 0, 0, 8])
        case 8: f = frame(8, 0, 0, [0, 0, 0, 1, 0, 0, 0, 0] + Array("bye".utf8))
        case 9: f = frame(4, 0, 1, [8, 0])
        case 10, 12, 13: f = frame(0x80 | UInt8.random(in: 0...0x7F, using: &rng), UInt8.random(in: 0...255, using: &rng), 0, [1, 2])
        case 14: f = frame(3, 0, nextID + 4, [1])
        default: f = (0..<Int.random(in: 1...30, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        // Mutate about a quarter of the frames: flip bits, rewrite header fields, or truncate.
        if Int.random(in: 0..<4, using: &rng) == 0, !f.isEmpty {
          switch Int.random(in: 0..<6, using: &rng) {
          case 0: let i = Int.random(in: 0..<f.count, using: &rng); f[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
          case 1: if f.count >= 5 { f[4] = UInt8.random(in: 0...255, using: &rng) }
          case 2: if f.count >= 6 { f[5] = UInt8.random(in: 0...255, using: &rng) }
          case 3: if f.count >= 10 { f[9] = UInt8.random(in: 0...255, using: &rng); f[6] = Bool.random(using: &rng) ? 0x80 : 0 }
          case 4: if f.count >= 4 { f[2] = UInt8.random(in: 0...255, using: &rng); f[3] = UInt8.random(in: 0...255, using: &rng) }
          default: f = Array(f.prefix(Int.random(in: 0..<f.count, using: &rng)))
          }
        }
        bytes += f
      }
      // 1 % of sequences also corrupt the preface or SETTINGS.
      if Int.random(in: 0..<100, using: &rng) == 0 { bytes[Int.random(in: 0..<20, using: &rng)] ^= 0xFF }
      let outcome = try self.run(bytes, settings: settings, sequence: n)
      counts[outcome, default: 0] += 1
    }
    // The generator must actually reach every kind of answer.
    for (kind, minimum) in [("accepted", 5_000), ("connection", 5_000), ("stream-rst", 500)] {
      XCTAssertGreaterThan(counts[kind] ?? 0, minimum, "too few \(kind) outcomes: \(counts)")
    }
  }

  /// Runs one sequence; returns how it ended. Fails the test on any answer outside the spec.
  func run(_ bytes: [UInt8], settings: ConnectionSettings, sequence n: Int) throws -> String {
    var decoder = FrameDecoder(settings: settings)
    var machine = ConnectionStateMachine(role: .server, localSettings: settings)
    var buffer = ByteBuffer(bytes: bytes)
    var lastOpened: UInt32 = 0
    var sawRST = false
    var prefaceDone = false
    while true {
      let headerStart = buffer.readerIndex
      let item: DecodedItem?
      do {
        item = try decoder.decode(&buffer)
      } catch {
        let allowed: Set<WireErrorCode> = [.protocolError, .frameSizeError, .unsupportedVersion]
        XCTAssertTrue(allowed.contains(error.code), "#\(n): decoder error \(error)")
        if prefaceDone, error.code != .unsupportedVersion,
          let h = buffer.getBytes(at: headerStart, length: 10)
        {
          XCTAssertEqual(
            Self.headerVerdict(h, maxFrame: settings.maxFrameSize, maxHeaders: settings.maxHeaderListSize), error.code,
            "#\(n): decoder disagrees with the spec on \(WireTest.hex(h))")
        }
        return "connection"
      }
      guard let item else { return sawRST ? "stream-rst" : "accepted" }
      if case .preface = item { prefaceDone = true }
      if case .frame = item, let h = buffer.getBytes(at: headerStart, length: 10) {
        XCTAssertNil(
          Self.headerVerdict(h, maxFrame: settings.maxFrameSize, maxHeaders: settings.maxHeaderListSize), "#\(n): decoder accepted \(WireTest.hex(h))")
      }
      let action = machine.receive(item, now: .now())
      switch action {
      case .connectionError(let error, let goAway):
        let allowed: Set<WireErrorCode> = [.protocolError, .frameSizeError, .flowControlError, .enhanceYourCalm]
        XCTAssertTrue(allowed.contains(error.code), "#\(n): \(error)")
        guard case .goAway(_, let code, let debug)? = goAway else { XCTFail("#\(n): no GOAWAY"); return "connection" }
        XCTAssertEqual(code, error.code)
        XCTAssertFalse(debug.isEmpty, "#\(n): GOAWAY without a reason")
        return "connection"
      case .streamFailed(let id, let error, let write):
        XCTAssertTrue(write.contains(.rst(streamID: id, code: error.code)), "#\(n): stream error without RST")
        sawRST = true
      case .write(let frames):
        for f in frames {
          switch f {
          case .ping(true, _), .windowUpdate: break
          case .rst(_, let code): XCTAssertTrue([.refusedStream, .protocolError].contains(code), "#\(n): \(f)"); sawRST = true
          default: XCTFail("#\(n): unexpected write \(f)")
          }
        }
      case .requestHeaders(let id, _, _):
        XCTAssertTrue(id > lastOpened && id % 2 == 1, "#\(n): stream \(id) after \(lastOpened)")
        lastOpened = id
      case .message(_, let message, _, _, _, _):
        XCTAssertLessThanOrEqual(message.readableBytes, settings.maxMessageSize, "#\(n)")
      case .messageTooLarge, .endOfRequest, .peerReset, .goAway, .ready, .none, .pingAck, .windowOpened, .holdingFragmentCredit:
        break
      case .responseHeaders, .trailers:
        XCTFail("#\(n): client-only action on a server: \(action)")
      }
      XCTAssertLessThanOrEqual(machine.openStreamCount, settings.maxConcurrentStreams, "#\(n)")
    }
  }
}
