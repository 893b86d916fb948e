import Foundation
import TestSupport
import XCTest

/// Clients that die mid-stream (`kill -9`: no GOAWAY, no RST, just a reset or EOF) leave
/// nothing behind in the server: handlers end, the in-flight gauge returns to 0, and memory and
/// descriptors come back to where they were.
final class KilledClientTests: XCTestCase {
  /// Clients killed in all; each round kills this many at once.
  static let clients = 200
  static let perRound = 10

  override func setUp() { DescriptorLimit.raiseSoftLimit() }

  func testTwoHundredKilledStreamingClientsLeaveNothingBehind() async throws {
    let server = try HardeningServer([])
    defer { server.stop() }
    let addresses = try server.addresses()
    // One round first: the allocator's arenas and NIO's pools reach their working size.
    try await self.killRound(addresses, server: server)
    try await Self.settle(server)
    let rssBefore = try server.rssMB()
    let fdsBefore = try Self.descriptors(server.pid)

    for _ in 0..<(Self.clients / Self.perRound) {
      try await self.killRound(addresses, server: server)
    }
    let metrics = try await Self.settle(server)
    let rssAfter = try server.rssMB()
    let fdsAfter = try Self.descriptors(server.pid)
    print("killed clients: RSS \(rssBefore) → \(rssAfter) MB, descriptors \(fdsBefore) → \(fdsAfter)")
    XCTAssertEqual(Self.inFlight(metrics), 0, "every stream of a killed client ended")
    XCTAssertEqual(sample(metrics, #"rpc_server_connections{listener="framed"}"#), 0)
    XCTAssertLessThan(rssAfter - rssBefore, 5, "RSS within 5 MB of the baseline")
    XCTAssertLessThanOrEqual(abs(fdsAfter - fdsBefore), 2, "descriptors within 2 of the baseline")
  }

  /// Starts `perRound` load processes running bidi and server streams, waits until the server
  /// has their streams in flight, and kills them all with SIGKILL.
  private func killRound(_ addresses: HardeningServer.Addresses, server: HardeningServer) async throws {
    let executable = try ServedProcess.quizwireExecutable()
    var processes: [Process] = []
    for i in 0..<Self.perRound {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: executable)
      let method = i.isMultiple(of: 2) ? "bench.v1.EchoService/Bidi" : "bench.v1.EchoService/ServerStream"
      p.arguments = [
        "load", "--framed", addresses.framed, "--method", method, "--concurrency", "4",
        "--messages-per-stream", "10000000", "--payload-size", "256", "--duration", "60s",
      ]
      p.standardOutput = FileHandle.nullDevice
      p.standardError = FileHandle.nullDevice
      try p.run()
      processes.append(p)
    }
    // Every process has its four streams open before it dies.
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
      if Self.inFlight(try await server.metrics()) >= Double(Self.perRound * 4) { break }
      try await Task.sleep(for: .milliseconds(20))
    }
    for p in processes { kill(p.processIdentifier, SIGKILL) }
    for p in processes { p.waitUntilExit() }
    XCTAssertTrue(processes.allSatisfy { $0.terminationReason == .uncaughtSignal }, "each client was killed mid-stream")
  }

  /// Waits (up to 10 s) until no stream is in flight and no framed connection is open; returns
  /// the last scrape.
  @discardableResult
  private static func settle(_ server: HardeningServer) async throws -> String {
    let deadline = ContinuousClock.now + .seconds(10)
    var metrics = try await server.metrics()
    while ContinuousClock.now < deadline {
      if Self.inFlight(metrics) == 0, sample(metrics, #"rpc_server_connections{listener="framed"}"#) == 0 { break }
      try await Task.sleep(for: .milliseconds(50))
      metrics = try await server.metrics()
    }
    return metrics
  }

  /// The sum of `rpc_server_in_flight` over every method.
  static func inFlight(_ exposition: String) -> Double {
    exposition.split(separator: "\n")
      .filter { $0.hasPrefix("rpc_server_in_flight{") }
      .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
      .reduce(0, +)
  }

  static func descriptors(_ pid: Int32) throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
  }
}
