import Foundation
import XCTest

/// `quizwire play` as a user runs it, answers piped on standard input, against `quizwire serve`
/// auth, quiz (with the demo quiz) and scoring.
extension CLITests {
  /// Runs the executable with `input` on its standard input; exit status, stdout, stderr.
  func run(_ arguments: [String], input: String, environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try self.executable())
    p.arguments = arguments
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    // Standard error goes to a file: reading two pipes to the end would need two threads.
    let errPath = NSTemporaryDirectory() + "quizwire-play-stderr-" + UUID().uuidString
    FileManager.default.createFile(atPath: errPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errPath) }
    let (stdin, stdout) = (Pipe(), Pipe())
    p.standardInput = stdin
    p.standardOutput = stdout
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try p.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let err = FileManager.default.contents(atPath: errPath) ?? Data()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
  }

  func testPlayTheDemoQuizWithAnswersOnStandardInput() throws {
    let dir = NSTemporaryDirectory() + "quizwire-play-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let ports = ["--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--data-dir", dir]
    let auth = try Server(try self.executable(), ["serve", "auth", "--internal-clients", "quiz,scoring"] + ports)
    defer { auth.stop() }
    let authFramed = try XCTUnwrap(try auth.addresses(timeout: 60)["framed"])
    let quiz = try Server(
      try self.executable(), ["serve", "quiz", "--auth-target", authFramed] + ports,
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": dir + "/quiz-client.secret"])
    defer { quiz.stop() }
    let quizFramed = try XCTUnwrap(try quiz.addresses(timeout: 60)["framed"])
    let scoring = try Server(
      try self.executable(), ["serve", "scoring", "--auth-target", authFramed, "--quiz-target", quizFramed] + ports,
      environment: ["QUIZWIRE_CLIENT_SECRET_FILE": dir + "/scoring-client.secret"])
    defer { scoring.stop() }
    let scoringFramed = try XCTUnwrap(try scoring.addresses(timeout: 60)["framed"])

    let registered = try self.run([
      "call", "--framed", authFramed, "auth.v1.AuthService/Register", #"{"email":"player@example.com","password":"correct horse battery"}"#,
    ])
    XCTAssertEqual(registered.status, 0, registered.stdout)
    let play = ["play", "--email", "player@example.com", "--auth", authFramed, "--framed", scoringFramed]

    // Demo answers: 1 async (right), 1 true (wrong: it's false), 1,2,4 (right), await (right),
    // 2 (wrong). "9" and "1,2" first are refused and asked again; the score is 3 of 5.
    let game = try self.run(play, input: "9\n1,2\n1\n1\n1,2,4\nawait\n2\n", environment: ["QUIZWIRE_PASSWORD": "correct horse battery"])
    XCTAssertEqual(game.status, 0, game.stdout + game.stderr)
    XCTAssertTrue(game.stdout.contains("Question 1 of 5"), game.stdout)
    XCTAssertTrue(game.stdout.contains("Which keyword marks a function that can suspend?"), game.stdout)
    XCTAssertTrue(game.stdout.contains("  1. async"), game.stdout)
    XCTAssertTrue(game.stdout.contains("\"9\" is not a choice"), game.stdout)
    XCTAssertTrue(game.stdout.contains("pick exactly one choice"), game.stdout)
    XCTAssertTrue(game.stdout.contains("wrong — score 1"), game.stdout)
    XCTAssertTrue(game.stdout.contains("correct, +1 — score 3"), game.stdout)
    XCTAssertTrue(game.stdout.contains("Final score: 3 / 5"), game.stdout)

    // Input that ends mid-game is an error naming the open question, not a hang.
    let short = try self.run(play + ["--password", "correct horse battery"], input: "1\n")
    XCTAssertEqual(short.status, 1)
    XCTAssertTrue(short.stderr.contains("standard input ended before question 2 of 5 was answered"), short.stderr)
    XCTAssertFalse(short.stdout.contains("Final score"))

    // A scoring service that isn't there is named.
    let nowhere = try self.run(
      ["play", "--email", "player@example.com", "--auth", authFramed, "--framed", "127.0.0.1:1"], input: "",
      environment: ["QUIZWIRE_PASSWORD": "correct horse battery"])
    XCTAssertEqual(nowhere.status, 1)
    XCTAssertTrue(nowhere.stderr.contains("cannot reach the scoring service at 127.0.0.1:1"), nowhere.stderr)
  }
}
