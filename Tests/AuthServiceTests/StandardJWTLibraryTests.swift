import Foundation
import TestSupport
import XCTest

@testable import AuthService

/// A token the auth service issues verifies with PyJWT against the published JWKS: the
/// tokens are standard, not merely Swift-to-Swift compatible.
final class StandardJWTLibraryTests: XCTestCase {
  func testPyJWTVerifiesIssuedTokensAndRejectsTampering() async throws {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Interop/python/verify_jwt.py").path
    guard Self.run(["python3", "-c", "import jwt, cryptography"]).status == 0 else {
      if TestDatabases.requireAll { return XCTFail("PyJWT missing (pip install 'pyjwt[crypto]') and QUIZWIRE_REQUIRE_ALL=1") }
      throw XCTSkip("PyJWT not installed: pip install 'pyjwt[crypto]'")
    }
    let fx = try await AuthFixture.start()
    do {
      try await fx.register("pat@example.com")
      let token = try await fx.login("pat@example.com").accessToken
      let jwks = try await fx.auth.getJWKS(.init()).jwksJson
      let dir = try TestDatabases.temporaryDirectory()
      defer { try? FileManager.default.removeItem(atPath: dir) }
      try jwks.write(toFile: dir + "/jwks.json", atomically: true, encoding: .utf8)
      try token.write(toFile: dir + "/token", atomically: true, encoding: .utf8)
      let ok = Self.run(["python3", script, dir + "/jwks.json", dir + "/token", "quizwire-auth", "quizwire"])
      XCTAssertEqual(ok.status, 0, ok.output)
      let claims = try JSONSerialization.jsonObject(with: Data(ok.output.utf8)) as? [String: Any]
      XCTAssertEqual(claims?["iss"] as? String, "quizwire-auth")
      XCTAssertEqual(claims?["roles"] as? [String], ["user"])

      // The same library refuses the wrong audience and a flipped signature byte.
      let wrongAudience = Self.run(["python3", script, dir + "/jwks.json", dir + "/token", "quizwire-auth", "someone-else"])
      XCTAssertEqual(wrongAudience.status, 1)
      XCTAssertTrue(wrongAudience.output.hasPrefix("rejected:"), "refused by PyJWT, not a crash: \(wrongAudience.output)")
      var parts = token.split(separator: ".").map(String.init)
      parts[2] = String(parts[2].reversed())
      try parts.joined(separator: ".").write(toFile: dir + "/token", atomically: true, encoding: .utf8)
      let tampered = Self.run(["python3", script, dir + "/jwks.json", dir + "/token", "quizwire-auth", "quizwire"])
      XCTAssertEqual(tampered.status, 1)
      XCTAssertTrue(tampered.output.hasPrefix("rejected:"), "refused by PyJWT, not a crash: \(tampered.output)")
    } catch {
      await fx.stop()
      throw error
    }
    await fx.stop()
  }

  static func run(_ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return (127, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }
}
