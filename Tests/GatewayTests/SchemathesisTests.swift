import Foundation
import TestSupport
import XCTest

/// PyPI's schemathesis against the live gateway, as an outside client that only knows
/// `/openapi.json`: it generates valid and invalid requests for every operation and checks
/// the answers against the document. Rate limits are raised so 429s don't hide answers; a
/// fresh user's bearer token authenticates every call, and the hooks
/// (Tests/Interop/python/schemathesis_hooks.py) make every fourth call of an operation a real
/// one (a draft quiz to publish, a key to revoke …), since ids can't be guessed. The verdict is
/// read from schemathesis' NDJSON report, not its exit status: no 5xx, no failed check, no
/// error, and at least one 2xx for every operation in the document.
final class SchemathesisTests: XCTestCase {
  static let pythonDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Interop/python")

  /// Cases per operation in the fuzzing phase. The coverage phase (every boundary and type
  /// error of each parameter) doesn't depend on it and takes about 145 s of a debug build on
  /// two cores; at 15 the whole run took 265 s of the 300 s budget, too close for CI.
  static let maxExamples = 8
  static let budget: TimeInterval = 300
  static let socketPath = "/api/v1/attempts/play"

  func testNoServerErrorsNoSchemaViolationsAndEveryOperationSucceedsOnce() async throws {
    guard try ChildCommand.succeeds("python3 -c 'import schemathesis'") else {
      if TestDatabases.requireAll { return XCTFail("python3 with schemathesis is required (pip install schemathesis==4.32.5)") }
      throw XCTSkip("python3 with schemathesis not found")
    }
    let h = try await GatewayHarness.start(gatewayFlags: ["rate-limit": "1000000"])
    do {
      let email = "schemathesis@example.com"
      let token = try await h.signIn(email, name: "Schemathesis")
      let spec = try await h.request("GET", "/openapi.json")
      let paths = try XCTUnwrap(spec.json?["paths"] as? [String: [String: Any]])
      // The Play socket's handshake is no request/response exchange schemathesis can make
      // (its plain GET is always 426); PlayWebSocketTests drives it with a WebSocket client.
      let operations = Set(paths.flatMap { path, item in item.keys.map { "\($0.uppercased()) \(path)" } }).subtracting([
        "GET \(Self.socketPath)"
      ])

      let report = FileManager.default.temporaryDirectory.appendingPathComponent("quizwire-schemathesis-\(UUID().uuidString).ndjson")
      // Hypothesis keeps its example database in the working directory unless told otherwise.
      let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("quizwire-hypothesis-\(UUID().uuidString)")
      defer {
        try? FileManager.default.removeItem(at: report)
        try? FileManager.default.removeItem(at: scratch)
      }
      let arguments = [
        "QW_BASE=\(h.baseURL)", "QW_TOKEN=\(token)", "QW_EMAIL=\(email)", "QW_PASSWORD=\(GatewayHarness.password)",
        "PYTHONPATH=\(Self.pythonDir.path)", "SCHEMATHESIS_HOOKS=schemathesis_hooks", "HYPOTHESIS_STORAGE_DIRECTORY=\(scratch.path)",
        "python3", "-c", "import sys; from schemathesis.cli import schemathesis; schemathesis(sys.argv[1:], prog_name='schemathesis')",
        "--config-file", Self.pythonDir.appendingPathComponent("schemathesis.toml").path, "run", "\(h.baseURL)/openapi.json", "--header",
        "Authorization: Bearer \(token)",
        "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,response_headers_conformance,content_type_conformance",
        "--phases", "examples,coverage,fuzzing", "--max-examples", String(Self.maxExamples), "--workers", "2", "--seed", "20261130",
        "--exclude-path", Self.socketPath, "--generation-database", "none", "--request-timeout", "30", "--no-color", "--report", "ndjson",
        "--report-ndjson-path", report.path,
      ]
      let started = ContinuousClock.now
      let run = try await Self.runOffThePool(arguments, timeout: Self.budget)
      print("schemathesis took \(ContinuousClock.now - started), exit \(run.status)\n" + run.stdout.suffix(3000))
      let verdict = try Verdict(report: Data(contentsOf: report))
      let context = "\n" + run.stdout.suffix(6000)

      XCTAssertTrue(verdict.finished, "the run ended within \(Self.budget) s" + context)
      XCTAssertEqual(verdict.serverErrors, [], "no 5xx" + context)
      XCTAssertEqual(verdict.failedChecks, [:], "no failed check (server error, status code, body schema, documented headers, content type)" + context)
      XCTAssertEqual(verdict.errors, [], "no operation errored (a schema schemathesis can't read, a hook failure)" + context)
      XCTAssertEqual(Set(verdict.statuses.keys), operations, "every operation of the document was tested")
      for operation in operations.sorted() {
        let statuses = verdict.statuses[operation] ?? [:]
        XCTAssertTrue(statuses.keys.contains { (200..<300).contains($0) }, "\(operation) never got a 2xx: \(statuses)")
      }
      XCTAssertEqual(run.status, 0, "schemathesis' own verdict agrees" + context)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }

  /// `ChildCommand.run` blocks its thread for the whole run; on a 2-core machine that would be
  /// half of the cooperative pool the gateway and the services answer on.
  static func runOffThePool(_ arguments: [String], timeout: TimeInterval) async throws -> (status: Int32, stdout: String) {
    try await withCheckedThrowingContinuation { continuation in
      DispatchQueue.global().async {
        continuation.resume(with: Result { try ChildCommand.run(arguments, timeout: timeout) })
      }
    }
  }

  /// What schemathesis' NDJSON event stream says about the run.
  struct Verdict {
    /// Status codes per operation ("GET /api/v1/quizzes/{id}"), counting only calls with the
    /// operation's own verb (the others probe 405s).
    var statuses: [String: [Int: Int]] = [:]
    var serverErrors: [String] = []
    /// "operation: check" → how many cases failed it.
    var failedChecks: [String: Int] = [:]
    var errors: [String] = []
    var finished = false

    init(report: Data) throws {
      for line in report.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
        let event = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        if event["EngineFinished"] != nil { self.finished = true }
        if let error = event["NonFatalError"] as? [String: Any] {
          self.errors.append("\(error["label"] ?? "?"): \(String(describing: error["info"] ?? error).prefix(300))")
        }
        guard let scenario = event["ScenarioFinished"] as? [String: Any], let recorder = scenario["recorder"] as? [String: Any],
          let label = recorder["label"] as? String
        else { continue }
        let verb = label.split(separator: " ").first.map(String.init) ?? ""
        for case let interaction as [String: Any] in (recorder["interactions"] as? [String: Any] ?? [:]).values {
          guard let request = interaction["request"] as? [String: Any], let response = interaction["response"] as? [String: Any],
            let status = response["status_code"] as? Int
          else { continue }
          if status >= 500 { self.serverErrors.append("\(request["method"] ?? "?") \(request["uri"] ?? "?") → \(status)") }
          if request["method"] as? String == verb { self.statuses[label, default: [:]][status, default: 0] += 1 }
        }
        for case let checks as [[String: Any]] in (recorder["checks"] as? [String: Any] ?? [:]).values {
          for check in checks where check["status"] as? String != "success" {
            self.failedChecks["\(label): \(check["name"] ?? "?")", default: 0] += 1
          }
        }
      }
    }
  }
}
