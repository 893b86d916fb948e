import BenchService
import Foundation
import FramedTransport
import GRPCCore
import LoadTest
import XCTest

final class LoadTestTests: XCTestCase {
  func testHistogramPercentiles() {
    var r = LatencyRecorder()
    for us in 1...1000 { r.record(.microseconds(us)) }
    XCTAssertEqual(r.count, 1000)
    XCTAssertEqual(Double(r.percentile(50)), 500, accuracy: 1)
    XCTAssertEqual(Double(r.percentile(99)), 990, accuracy: 1)
    XCTAssertEqual(Double(r.maxMicros), 1000, accuracy: 1)
    var other = LatencyRecorder()
    other.record(.seconds(2))
    r.merge(other)
    XCTAssertEqual(Double(r.maxMicros), 2_000_000, accuracy: 2_000)
    XCTAssertTrue(r.percentileDistribution().contains("Percentile"))
  }

  func testOpenLoopScheduleIsIndependentOfCompletions() {
    let s = OpenLoopSchedule(rate: 1000)
    XCTAssertEqual(s.dueOffset(of: 0), .zero)
    XCTAssertEqual(s.dueOffset(of: 1), .milliseconds(1))
    XCTAssertEqual(s.dueOffset(of: 2500), .milliseconds(2500))
    XCTAssertEqual(s.dueCount(by: .milliseconds(10)), 11)
  }

  func testReportJSONHasTheContractKeys() throws {
    var r = LatencyRecorder()
    r.record(.microseconds(100))
    let report = LoadReport(
      method: "m", transport: "framed", mode: "closed loop c=1", calls: 10, messages: 20, elapsed: .seconds(2), bytes: 1280, errors: ["unavailable": 1],
      latency: r, interrupted: false)
    let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(report.jsonLine().utf8)) as? [String: Any])
    XCTAssertEqual(json["calls_per_s"] as? Double, 5)
    XCTAssertEqual(json["messages_per_s"] as? Double, 10)
    XCTAssertEqual((json["errors"] as? [String: Int])?["unavailable"], 1)
    let latency = try XCTUnwrap(json["latency"] as? [String: Any])
    for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] { XCTAssertNotNil(latency[key], key) }
    XCTAssertFalse(report.jsonLine().contains("\n"))
  }

  func testShortRunAgainstALiveServerCountsEveryCall() async throws {
    let transport = try FramedServerTransport(config: .init(host: "127.0.0.1", port: 0))
    let server = GRPCServer(transport: transport, services: [EchoService()])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      let port = try await transport.listeningAddress.port!
      try await withGRPCClient(transport: try FramedClientTransport(config: .init(targets: [FramedTarget(host: "127.0.0.1", port: port)]))) { client in
        for method in LoadMethod.allCases {
          var options = LoadOptions()
          options.method = method
          options.concurrency = 8
          options.duration = nil
          options.requests = 300
          options.messagesPerStream = 5
          let report = await LoadGenerator(options: options).run(client: client, transportName: "framed")
          XCTAssertEqual(report.calls, 300, "\(method)")
          XCTAssertEqual(report.errors, [:], "\(method)")
          XCTAssertEqual(report.latency.p50_us > 0, true)
          let perCall = method == .unary ? 2 : method == .bidi ? 10 : 6
          XCTAssertEqual(report.messages, 300 * perCall, "\(method)")
        }
        // Open loop: 200 calls due at 2000/s finish in about 0.1 s plus the last call.
        var open = LoadOptions()
        open.rate = 2000
        open.requests = 200
        open.duration = nil
        let report = await LoadGenerator(options: open).run(client: client, transportName: "framed")
        XCTAssertEqual(report.calls, 200)
        XCTAssertGreaterThanOrEqual(report.elapsed_s, 0.09)
      }
      server.beginGracefulShutdown()
    }
  }
}
