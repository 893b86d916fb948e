import Foundation
import NIOCore
import XCTest

@testable import FramedWire

/// Helpers shared by the FramedWire tests.
enum WireTest {
  static let vectorsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors")

  /// Reads a `.hex` vector: whitespace-separated hex pairs, `#` comment lines.
  static func readHex(_ name: String) throws -> [UInt8] {
    let text = try String(contentsOf: vectorsDirectory.appendingPathComponent(name), encoding: .utf8)
    return try hexBytes(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.joined(separator: " "))
  }

  static func hexBytes(_ text: String) throws -> [UInt8] {
    let digits = text.filter { !$0.isWhitespace }
    guard digits.count % 2 == 0 else { throw TestError("odd number of hex digits") }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var i = digits.startIndex
    while i < digits.endIndex {
      let j = digits.index(i, offsetBy: 2)
      guard let b = UInt8(digits[i..<j], radix: 16) else { throw TestError("bad hex \(digits[i..<j])") }
      out.append(b)
      i = j
    }
    return out
  }

  static func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
  }

  static func encode(_ frame: Frame) -> [UInt8] {
    var b = ByteBuffer()
    FrameEncoder.encode(frame, into: &b)
    return Array(b.readableBytesView)
  }

  /// A server state machine (and decoder) that has completed the handshake.
  static func handshakenServer(settings: ConnectionSettings = ConnectionSettings()) -> (FrameDecoder, ConnectionStateMachine) {
    var machine = ConnectionStateMachine(role: .server, localSettings: settings)
    _ = machine.receive(.preface(version: 1), now: .now())
    _ = machine.receive(.frame(.settings([])), now: .now())
    return (FrameDecoder(settings: settings, expectPreface: false), machine)
  }

  static func requestHeaders(_ method: String = "/bench.v1.EchoService/Unary") -> ByteBuffer {
    var h = RequestHeaders()
    h.method = method
    return ByteBuffer(bytes: try! h.serializedBytes() as [UInt8])
  }
}

struct TestError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { self.description = d }
}

/// Deterministic PRNG (SplitMix64) so fuzz failures reproduce from their seed.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { self.state = seed }
  mutating func next() -> UInt64 {
    self.state &+= 0x9E37_79B9_7F4A_7C15
    var z = self.state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
