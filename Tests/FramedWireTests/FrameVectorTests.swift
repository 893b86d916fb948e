import Foundation
import NIOCore
import WireProtos
import XCTest

@testable import FramedWire

/// Decodes and re-encodes every byte-exact vector in Tests/FramedWireTests/Vectors (shared with
/// the C client), and checks every invalid vector gets the answer the spec gives it.
final class FrameVectorTests: XCTestCase {
  struct Vector {
    var name: String
    var file: String
    var kind: String
    var direction: String
    var expect: [String: Any]
    var context: String
    var parts: [String]
  }

  func loadVectors() throws -> [Vector] {
    let data = try Data(contentsOf: WireTest.vectorsDirectory.appendingPathComponent("vectors.json"))
    let list = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
    return list.map {
      Vector(
        name: $0["name"] as! String, file: $0["file"] as! String, kind: $0["kind"] as! String,
        direction: $0["direction"] as? String ?? "either", expect: $0["expect"] as? [String: Any] ?? [:],
        context: $0["context"] as? String ?? "", parts: $0["parts"] as? [String] ?? [])
    }
  }

  func testThereAreVectorsOfEveryKind() throws {
    let vectors = try loadVectors()
    XCTAssertGreaterThanOrEqual(vectors.count, 60)
    for kind in ["preface", "frame", "sequence", "invalid"] {
      XCTAssertTrue(vectors.contains { $0.kind == kind }, "no \(kind) vectors")
    }
  }

  func testValidFramesDecodeAndReencodeByteExactly() throws {
    for v in try loadVectors() where v.kind == "frame" {
      let bytes = try WireTest.readHex(v.file)
      var buffer = ByteBuffer(bytes: bytes)
      var decoder = FrameDecoder(settings: ConnectionSettings(), expectPreface: false)
      guard case .frame(let frame)? = try decoder.decode(&buffer) else {
        XCTFail("\(v.name): did not decode to a frame")
        continue
      }
      XCTAssertEqual(buffer.readableBytes, 0, "\(v.name): trailing bytes")
      XCTAssertEqual(Int(bytes[4]), v.expect["type"] as? Int, "\(v.name): type")
      XCTAssertEqual(Int(frame.streamID), v.expect["stream_id"] as? Int, "\(v.name): stream id")
      try self.checkFields(frame, v)
      // Extension frames are ignored, so their payload is not kept; everything else round-trips.
      if case .unknownExtension = frame { continue }
      XCTAssertEqual(WireTest.hex(WireTest.encode(frame)), WireTest.hex(bytes), "\(v.name): re-encoding differs")
    }
  }

  func checkFields(_ frame: Frame, _ v: Vector) throws {
    let e = v.expect
    switch frame {
    case .settings(let entries):
      let expected = (e["settings"] as? [[Int]]) ?? []
      XCTAssertEqual(entries.map { [Int($0.id), Int($0.value)] }, expected, v.name)
    case .headers(_, _, let payload):
      if let rh = e["request_headers"] as? [String: Any] {
        let h = try RequestHeaders(serializedBytes: Array(payload.readableBytesView))
        XCTAssertEqual(h.method, rh["method"] as? String, v.name)
        XCTAssertEqual(Int(h.timeoutUs), rh["timeout_us"] as? Int ?? 0, v.name)
        XCTAssertEqual(h.messageEncoding, rh["message_encoding"] as? String ?? "", v.name)
        XCTAssertEqual(self.metadata(h.metadata), self.expectedMetadata(rh["metadata"]), v.name)
      } else if let rh = e["response_headers"] as? [String: Any] {
        let h = try ResponseHeaders(serializedBytes: Array(payload.readableBytesView))
        XCTAssertEqual(h.messageEncoding, rh["message_encoding"] as? String ?? "", v.name)
        XCTAssertEqual(self.metadata(h.metadata), self.expectedMetadata(rh["metadata"]), v.name)
      }
    case .trailers(_, let payload):
      let t = try Trailers(serializedBytes: Array(payload.readableBytesView))
      XCTAssertEqual(Int(t.code), e["code"] as? Int ?? 0, v.name)
      XCTAssertEqual(t.message, e["message"] as? String ?? "", v.name)
      XCTAssertEqual(WireTest.hex(t.statusDetails), e["status_details_hex"] as? String ?? "", v.name)
      XCTAssertEqual(self.metadata(t.metadata), self.expectedMetadata(e["metadata"]), v.name)
    case .message(_, let flags, let payload):
      XCTAssertEqual(Int(flags.rawValue), e["flags"] as? Int, v.name)
      if let hex = e["payload_hex"] as? String {
        XCTAssertEqual(WireTest.hex(payload.readableBytesView), hex, v.name)
      }
      if let encodingName = e["encoding"] as? String, let expected = e["decompressed_hex"] as? String {
        let encoding = try XCTUnwrap(MessageEncoding(headerValue: encodingName))
        let plain = try encoding.decompress(payload, maxSize: 1 << 20)
        XCTAssertEqual(WireTest.hex(plain.readableBytesView), expected, v.name)
      }
    case .rst(_, let code):
      XCTAssertEqual(Int(code.rawValue), e["error_code"] as? Int, v.name)
    case .windowUpdate(_, let increment):
      XCTAssertEqual(Int(increment), e["increment"] as? Int, v.name)
    case .ping(let ack, let opaque):
      XCTAssertEqual(ack, e["ack"] as? Bool, v.name)
      XCTAssertEqual(String(format: "%016llx", opaque), e["opaque_hex"] as? String, v.name)
    case .goAway(let last, let code, let debug):
      XCTAssertEqual(Int(last), e["last_stream_id"] as? Int, v.name)
      XCTAssertEqual(Int(code.rawValue), e["error_code"] as? Int, v.name)
      XCTAssertEqual(debug, e["debug"] as? String ?? "", v.name)
    case .unknownExtension:
      break
    }
  }

  func metadata(_ entries: [MetadataEntry]) -> [String] {
    entries.map { m in
      switch m.value {
      case .binary(let b)?: return "\(m.key)|binary|\(WireTest.hex(b))"
      case .text(let t)?: return "\(m.key)|text|\(t)"
      case nil: return "\(m.key)|none|"
      }
    }
  }

  func expectedMetadata(_ any: Any?) -> [String] {
    ((any as? [[String]]) ?? []).map { $0.joined(separator: "|") }
  }

  func testPrefacesDecode() throws {
    for v in try loadVectors() where v.kind == "preface" {
      var buffer = ByteBuffer(bytes: try WireTest.readHex(v.file))
      var decoder = FrameDecoder(settings: ConnectionSettings())
      XCTAssertEqual(try decoder.decode(&buffer), .preface(version: 1), v.name)
      var out = ByteBuffer()
      Preface.write(into: &out)
      XCTAssertEqual(Array(out.readableBytesView), try WireTest.readHex(v.file), v.name)
    }
  }

  func testSequencesAreTheirPartsAndDecodeWhole() throws {
    let vectors = try loadVectors()
    let byName = Dictionary(uniqueKeysWithValues: vectors.map { ($0.name, $0) })
    for v in vectors where v.kind == "sequence" {
      let bytes = try WireTest.readHex(v.file)
      if !v.parts.isEmpty {
        let joined = try v.parts.flatMap { try WireTest.readHex(byName[$0]!.file) }
        XCTAssertEqual(WireTest.hex(joined), WireTest.hex(bytes), "\(v.name) differs from its parts")
      }
      // Decode the whole stream, fed in small uneven chunks as a socket would deliver it.
      let startsWithPreface = Array(bytes.prefix(6)) == Preface.magic
      var decoder = FrameDecoder(settings: ConnectionSettings(), expectPreface: startsWithPreface)
      var cumulation = ByteBuffer()
      var items: [DecodedItem] = []
      var offset = 0
      var chunk = 1
      while offset < bytes.count {
        let end = min(bytes.count, offset + chunk)
        cumulation.writeBytes(bytes[offset..<end])
        offset = end
        chunk = chunk * 3 % 97 + 1
        while let item = try decoder.decode(&cumulation) { items.append(item) }
      }
      XCTAssertEqual(cumulation.readableBytes, 0, "\(v.name): leftover bytes")
      XCTAssertFalse(items.isEmpty, v.name)
      if let frames = v.expect["frames"] as? [[String: Any]] {
        let decodedFrames = items.compactMap { item -> Frame? in
          if case .frame(let f) = item { return f }
          return nil
        }
        XCTAssertEqual(decodedFrames.count, frames.count, v.name)
        for (f, e) in zip(decodedFrames, frames) {
          XCTAssertEqual(Int(f.streamID), e["stream_id"] as? Int, v.name)
        }
      }
      if v.name == "message_split_70000" {
        var assembler = MessageAssembler(maxMessageSize: 4 << 20)
        var whole: ByteBuffer?
        for case .frame(.message(_, let flags, let payload)) in items {
          if case .message(let m, _) = assembler.append(payload, flags: flags) { whole = m }
        }
        let message = try XCTUnwrap(whole)
        XCTAssertEqual(message.readableBytes, 70004)
      }
    }
  }

  func testInvalidVectorsGetTheSpecifiedAnswer() throws {
    for v in try loadVectors() where v.kind == "invalid" {
      let bytes = try WireTest.readHex(v.file)
      let expectedKind = v.expect["error"] as? String
      let expectedCode = v.expect["code"] as? Int
      let outcome = try self.feed(bytes, context: v.context)
      switch outcome {
      case .connection(let code):
        XCTAssertEqual(expectedKind, "connection", "\(v.name): got a connection error \(code)")
        XCTAssertEqual(Int(code.rawValue), expectedCode, "\(v.name): wrong code \(code)")
      case .stream(let code):
        XCTAssertEqual(expectedKind, "stream", "\(v.name): got a stream error \(code)")
        XCTAssertEqual(Int(code.rawValue), expectedCode, "\(v.name): wrong code \(code)")
      case .accepted:
        XCTFail("\(v.name): accepted input the spec rejects")
      }
    }
  }

  enum Outcome { case connection(WireErrorCode), stream(WireErrorCode), accepted }

  /// Sets up the receiver the vector's context describes and feeds it the bytes.
  func feed(_ bytes: [UInt8], context: String) throws -> Outcome {
    let settings = ConnectionSettings()
    var decoder: FrameDecoder
    var machine: ConnectionStateMachine
    if context.contains("a client") {
      machine = ConnectionStateMachine(role: .client, localSettings: settings)
      _ = machine.receive(.preface(version: 1), now: .now())
      _ = machine.receive(.frame(.settings([])), now: .now())
      _ = machine.openStream()
      decoder = FrameDecoder(settings: settings, expectPreface: false)
    } else if context.contains("nothing read yet") {
      machine = ConnectionStateMachine(role: .server, localSettings: settings)
      decoder = FrameDecoder(settings: settings, expectPreface: true)
    } else if context.contains("first frame after") {
      machine = ConnectionStateMachine(role: .server, localSettings: settings)
      _ = machine.receive(.preface(version: 1), now: .now())
      decoder = FrameDecoder(settings: settings, expectPreface: false)
    } else {
      (decoder, machine) = WireTest.handshakenServer(settings: settings)
      if context.contains("stream 1 is open") {
        let endStream = context.contains("END_STREAM received")
        _ = machine.receive(.frame(.headers(streamID: 1, endStream: endStream, payload: WireTest.requestHeaders())), now: .now())
      }
    }
    var buffer = ByteBuffer(bytes: bytes)
    do {
      while let item = try decoder.decode(&buffer) {
        switch machine.receive(item, now: .now()) {
        case .connectionError(let e, _): return .connection(e.code)
        case .streamFailed(_, let e, _): return .stream(e.code)
        case .write(let frames):
          for case .rst(_, let code) in frames { return .stream(code) }
        default: break
        }
      }
    } catch {
      return .connection(error.code)
    }
    return .accepted
  }
}
