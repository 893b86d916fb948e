import Foundation
import Gateway
import ServiceKit
import TestSupport
import XCTest

/// `tls-cert`/`tls-key`: the API port speaks HTTPS only, and every answer — an upstream
/// error, the OpenAPI document, a refusal — carries `Strict-Transport-Security`. Spoken to by
/// curl (a client we did not write) trusting a certificate openssl made for the test.
final class GatewayTLSTests: XCTestCase {
  func testHTTPSOnlyAndEveryAnswerCarriesHSTS() async throws {
    let dir = try TestDatabases.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try Self.shell(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem -days 2 "
        + "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null", in: dir)
    // No services: the API answers 503, which must carry HSTS too.
    let (_, addresses, running) = try await startLoneGateway(
      flags: ["tls-cert": dir + "/cert.pem", "tls-key": dir + "/key.pem", "hsts-max-age": "600"])
    defer { running.cancel() }
    let address = addresses.http
    let closed = "127.0.0.1:1"

    for (path, status) in [("/api/v1/quizzes/q1", "503"), ("/openapi.json", "200"), ("/api/v1/nowhere", "404")] {
      let head = try Self.shell("curl -sS --max-time 10 --cacert cert.pem -o /dev/null -D - https://\(address)\(path)", in: dir)
      let lines = head.split(separator: "\r\n").map(String.init)
      XCTAssertTrue(lines.first?.contains(" \(status)") == true, "\(path): \(head)")
      XCTAssertTrue(lines.contains { $0.lowercased() == "strict-transport-security: max-age=600" }, "\(path): \(head)")
    }
    // Plain HTTP on the TLS port gets no HTTP answer.
    XCTAssertThrowsError(try Self.shell("curl -sS --max-time 5 -o /dev/null http://\(address)/openapi.json", in: dir))

    // A certificate without its key (or the reverse) is a configuration error naming the key.
    XCTAssertThrowsError(
      try GatewaySettings(
        layers: ConfigLayers(
          environment: [:], flags: ["auth-target": closed, "quiz-target": closed, "scoring-target": closed, "tls-cert": dir + "/cert.pem"]))
    ) { XCTAssertTrue("\($0)".contains("tls-key"), "\($0)") }

    // A file that can't be read stops the gateway with an error naming the setting and the path.
    for (flag, missing) in [("tls-cert", dir + "/missing-cert.pem"), ("tls-key", dir + "/missing-key.pem")] {
      var files = ["tls-cert": dir + "/cert.pem", "tls-key": dir + "/key.pem"]
      files[flag] = missing
      let settings = try GatewaySettings(
        layers: ConfigLayers(
          environment: [:],
          flags: files.merging(
            [
              "auth-target": closed, "quiz-target": closed, "scoring-target": closed, "http-port": "0", "admin-port": "0",
              "data-dir": try TestDatabases.temporaryDirectory(),
            ]
          ) { $1 }))
      let gateway = try GatewayHost(settings: settings, logSink: CapturedLog().sink)
      do {
        try await gateway.run()
        XCTFail("\(flag): the gateway served without its \(flag)")
      } catch {
        XCTAssertTrue("\(error)".contains(flag) && "\(error)".contains(missing), "\(error)")
      }
    }
  }

  /// Runs `command` with sh in `dir`; its standard output, or a throw when it exits non-zero.
  @discardableResult
  static func shell(_ command: String, in dir: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.currentDirectoryURL = URL(fileURLWithPath: dir)
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0 else { throw ShellFailure(command: command, status: process.terminationStatus, output: text) }
    return text
  }

  struct ShellFailure: Error { var command: String, status: Int32, output: String }
}
