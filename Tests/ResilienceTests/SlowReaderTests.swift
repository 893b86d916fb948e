import BenchService
import Foundation
import FramedTransport
import FramedWire
import GRPCCore
import NIOCore
import NIOPosix
import QuizwireProtos
import TestSupport
import XCTest

/// Socket back-pressure (Hardening, item 1): clients that advertise the largest windows, start a
/// huge `ServerStream` and then never read must not grow the server's memory without bound,
/// must not slow calls on other connections, and must leave nothing behind once they go.
final class SlowReaderTests: XCTestCase {
  static let maxGrowthMB = 64.0
  static let maxP99 = Duration.milliseconds(50)
  static let returnSlackMB = 20.0
  /// Long enough for a server without back-pressure to queue gigabytes (it did ~800 MB/s).
  static let flood = Duration.seconds(3)

  /// Tiny messages: the per-message overhead must be bounded, not only the bytes.
  func testOneSlowReaderCannotGrowTheServer() async throws {
    try await self.run(slowClients: 1, payloadBytes: 64)
  }

  /// Large messages, the fastest way to grow a server's memory. (Before each connection is
  /// blocked the server fills its kernel send buffer, ~4 MiB: with small messages that alone
  /// costs seconds of CPU in a debug build, which is not what this test is about.)
  func testFiftySlowReadersAtOnceCannotGrowTheServer() async throws {
    try await self.run(slowClients: 50, payloadBytes: 16_000)
  }

  private func run(slowClients: Int, payloadBytes: Int) async throws {
    let server = try BenchServer()
    defer { server.stop() }
    let target = try XCTUnwrap(FramedTarget(try server.framedAddress()))
    try await withGRPCClient(transport: try FramedClientTransport(config: .init(targets: [target]))) { grpc in
      let echo = Bench_V1_EchoService.Client(wrapping: grpc)
      // Warm up first, so the baseline already holds the normal client's connection and caches.
      for _ in 0..<200 { _ = try await echo.unary(Self.ping) }
      try await Task.sleep(for: .milliseconds(300))
      let baseline = try server.rssMB()

      var slow: [SlowReader] = []
      for _ in 0..<slowClients { slow.append(try await SlowReader(port: target.port, payloadBytes: payloadBytes)) }
      let sampler = Task { try await Self.peakRSS(of: server, baseline: baseline, for: Self.flood) }
      let latencies = try await Self.unaryLatencies(echo, for: Self.flood)
      let peak = try await sampler.value
      for s in slow { await s.close() }
      let after = try await Self.settledRSS(of: server, target: baseline + Self.returnSlackMB, within: .seconds(8))

      let p99 = Self.percentile(latencies.durations, 0.99)
      let report =
        "\(slowClients) slow reader(s), \(payloadBytes) B: RSS \(Self.mb(baseline)) → peak \(Self.mb(peak)) → \(Self.mb(after)) MB after close; "
        + "\(latencies.durations.count) unary calls, \(latencies.failures) failed, p99 \(p99)"
      print(report)
      XCTAssertLessThan(peak - baseline, Self.maxGrowthMB, report)
      XCTAssertEqual(latencies.failures, 0, report)
      XCTAssertGreaterThan(latencies.durations.count, 20, "the normal client made progress: \(report)")
      XCTAssertLessThan(p99, Self.maxP99, report)
      XCTAssertLessThanOrEqual(after - baseline, Self.returnSlackMB, report)
    }
  }

  static let ping: Bench_V1_EchoRequest = {
    var r = Bench_V1_EchoRequest()
    r.payload = Data("ping".utf8)
    return r
  }()

  /// Back-to-back unary calls on the normal connection, each with a 2 s deadline.
  static func unaryLatencies(
    _ echo: Bench_V1_EchoService.Client<FramedClientTransport>, for duration: Duration
  ) async throws -> (durations: [Duration], failures: Int) {
    var options = CallOptions.defaults
    options.timeout = .seconds(2)
    var durations: [Duration] = []
    var failures = 0
    let clock = ContinuousClock()
    let end = clock.now + duration
    while clock.now < end {
      let start = clock.now
      do {
        _ = try await echo.unary(Self.ping, options: options)
        durations.append(clock.now - start)
      } catch {
        failures += 1
      }
    }
    return (durations, failures)
  }

  /// Highest RSS seen; stops early past 1 GB of growth so a failing run doesn't exhaust the host.
  static func peakRSS(of server: BenchServer, baseline: Double, for duration: Duration) async throws -> Double {
    let end = ContinuousClock.now + duration
    var peak = baseline
    while ContinuousClock.now < end {
      peak = max(peak, try server.rssMB())
      if peak - baseline > 1024 { break }
      try await Task.sleep(for: .milliseconds(50))
    }
    return peak
  }

  /// Polls until RSS is at or below `target` (or time is up); returns the last reading.
  static func settledRSS(of server: BenchServer, target: Double, within limit: Duration) async throws -> Double {
    let end = ContinuousClock.now + limit
    var rss = try server.rssMB()
    while rss > target, ContinuousClock.now < end {
      try await Task.sleep(for: .milliseconds(200))
      rss = try server.rssMB()
    }
    return rss
  }

  static func percentile(_ values: [Duration], _ p: Double) -> Duration {
    guard !values.isEmpty else { return .seconds(3600) }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
  }

  static func mb(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// A client that asks for an endless stream with every window wide open and then never reads
/// its socket (`autoRead` off): only the kernel's buffers and the server's back-pressure stand
/// between it and the server's memory.
final class SlowReader: Sendable {
  let channel: any Channel

  init(port: Int, payloadBytes: Int) async throws {
    self.channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelOption(.autoRead, value: false)
      .connect(host: "127.0.0.1", port: port).get()
    var settings = ConnectionSettings()
    settings.initialStreamWindow = WireLimits.maxWindow
    settings.initialConnectionWindow = WireLimits.maxWindow
    settings.maxFrameSize = WireLimits.maxFrameSizeCap
    var headers = RequestHeaders()
    headers.method = "/bench.v1.EchoService/ServerStream"
    var request = Bench_V1_EchoRequest()
    request.payload = Data(repeating: 0x61, count: payloadBytes)
    request.count = EchoService.maxServerStreamCount
    var out = ByteBuffer()
    Preface.write(into: &out)
    FrameEncoder.encodeSettings(settings, into: &out)
    FrameEncoder.encode(.headers(streamID: 1, endStream: false, payload: ByteBuffer(bytes: try headers.serializedBytes() as [UInt8])), into: &out)
    FrameEncoder.encode(.message(streamID: 1, flags: .endStream, payload: ByteBuffer(bytes: try request.serializedBytes() as [UInt8])), into: &out)
    try await self.channel.writeAndFlush(out)
  }

  func close() async { try? await self.channel.close() }
}

/// `quizwire serve bench` as a child process, on ephemeral ports.
final class BenchServer: Sendable {
  private let served: ServedProcess

  init() throws { self.served = try ServedProcess("bench") }

  /// The framed listener's "host:port", from the address line the server prints when ready.
  func framedAddress(timeout: TimeInterval = 60) throws -> String {
    guard let framed = try self.served.addresses(timeout: timeout)["framed"] else {
      throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "quizwire serve bench printed no address line"])
    }
    return framed
  }

  /// Resident set size in MB (VmRSS from /proc).
  func rssMB() throws -> Double { try self.served.rssMB() }

  func stop() { self.served.stop() }
}
