import Foundation
import Logging
import XCTest

@testable import ServiceKit

final class ConfigLayersTests: XCTestCase {
  func tempFile(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "qw-config-\(UUID().uuidString).json"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
  }

  func testFlagsBeatEnvironmentBeatFileBeatDefaults() throws {
    let file = try self.tempFile(#"{"framed_port": 7000, "grpc-port": 7001, "admin-port": 7002, "host": "0.0.0.0"}"#)
    let layers = try ConfigLayers(environment: ["QUIZWIRE_GRPC_PORT": "8001", "QUIZWIRE_FRAMED_PORT": "8000"], filePath: file)
    XCTAssertEqual(try layers.int("framed-port", flag: 9000, default: 1, in: 0...65535), 9000)
    XCTAssertEqual(try layers.int("grpc-port", flag: nil, default: 1, in: 0...65535), 8001)
    XCTAssertEqual(try layers.int("admin-port", flag: nil, default: 1, in: 0...65535), 7002)
    XCTAssertEqual(try layers.int("other-port", flag: nil, default: 1, in: 0...65535), 1)
    XCTAssertEqual(layers.string("host", flag: nil, default: "127.0.0.1"), "0.0.0.0")
  }

  func testBadValuesNameTheKeyAndWhereTheyCameFrom() throws {
    let file = try self.tempFile(#"{"grace": "soon"}"#)
    let layers = try ConfigLayers(environment: ["QUIZWIRE_FRAMED_PORT": "70000"], filePath: file)
    XCTAssertThrowsError(try layers.int("framed-port", flag: nil, default: 0, in: 0...65535)) { error in
      XCTAssertEqual("\(error)", "config framed-port (from environment): 70000 is outside 0...65535")
    }
    XCTAssertThrowsError(try layers.double("grace", flag: nil, default: 10, in: 0...60)) { error in
      XCTAssertTrue("\(error)".contains("config grace (from config file"), "\(error)")
      XCTAssertTrue("\(error)".contains("\"soon\" is not a number"), "\(error)")
    }
    XCTAssertThrowsError(try ConfigLayers(environment: [:], filePath: try self.tempFile("[1,2]"))) { error in
      XCTAssertTrue("\(error)".contains("must be a JSON object"))
    }
  }

  func testSecretsComeOnlyFromEnvironmentOrFilesAndNeverPrint() throws {
    let secretFile = try self.tempFile("s3cr3t-from-file\n")
    let layers = try ConfigLayers(environment: ["QUIZWIRE_DB_PASSWORD": "hunter2-env", "QUIZWIRE_SIGNING_KEY_FILE": secretFile])
    let password = try XCTUnwrap(try layers.secret("db-password"))
    XCTAssertEqual(password.reveal(), "hunter2-env")
    XCTAssertEqual("\(password)", "<redacted>")
    XCTAssertEqual(String(reflecting: password), "<redacted>")
    var dumped = ""
    dump(password, to: &dumped)
    XCTAssertFalse(dumped.contains("hunter2"))
    XCTAssertEqual(try layers.secret("signing-key")?.reveal(), "s3cr3t-from-file")
    XCTAssertNil(try layers.secret("absent"))
    // A secret in the config file is refused, and the error doesn't echo it.
    let file = try self.tempFile(#"{"db-password": "in-the-file"}"#)
    XCTAssertThrowsError(try ConfigLayers(environment: [:], filePath: file).secret("db-password")) { error in
      XCTAssertFalse("\(error)".contains("in-the-file"))
      XCTAssertTrue("\(error)".contains("QUIZWIRE_DB_PASSWORD_FILE"))
    }
  }
}

final class JSONLogHandlerTests: XCTestCase {
  func testOneEscapedJSONObjectPerLineWithCredentialsRedacted() throws {
    let log = CapturedLog()
    var logger = Logger(label: "auth") { JSONLogHandler(label: $0, sink: log.sink) }
    logger[metadataKey: "request_id"] = "r-9"
    logger.info("login \"quoted\"\nnext", metadata: ["password": "pw-value", "attempts": .stringConvertible(3), "ok": .stringConvertible(true)])
    logger.debug("below the level")
    let lines = log.rawLines()
    XCTAssertEqual(lines.count, 1)
    XCTAssertTrue(lines[0].hasSuffix("}\n"))
    XCTAssertEqual(lines[0].filter { $0 == "\n" }.count, 1)
    let entry = try XCTUnwrap(log.entries().first)
    XCTAssertEqual(entry["message"] as? String, "login \"quoted\"\nnext")
    XCTAssertEqual(entry["service"] as? String, "auth")
    XCTAssertEqual(entry["level"] as? String, "info")
    XCTAssertEqual(entry["request_id"] as? String, "r-9")
    XCTAssertEqual(entry["attempts"] as? Int, 3)
    XCTAssertEqual(entry["ok"] as? Bool, true)
    XCTAssertEqual(entry["password"] as? String, "<redacted>")
    XCTAssertFalse(lines[0].contains("pw-value"))
    XCTAssertNotNil(entry["time"] as? String)
  }
}
