import Foundation

/// What a load run measured. Encoded as one JSON object (the last line of `quizwire load --json`).
public struct LoadReport: Codable, Sendable, Equatable {
  public struct Latency: Codable, Sendable, Equatable {
    public var p50_us: UInt64
    public var p90_us: UInt64
    public var p99_us: UInt64
    public var p999_us: UInt64
    public var max_us: UInt64
  }

  public var method: String
  public var transport: String
  public var mode: String
  /// Completed calls (streams count once).
  public var calls: Int
  /// Messages sent plus received by the generator.
  public var messages: Int
  public var elapsed_s: Double
  public var calls_per_s: Double
  public var messages_per_s: Double
  /// Payload bytes sent plus received.
  public var bytes: Int
  /// Failed calls by gRPC status name.
  public var errors: [String: Int]
  public var latency: Latency
  /// True when the run was interrupted (Ctrl-C) and this is the partial result.
  public var interrupted: Bool
  /// The full distribution in HdrHistogram's percentile format (not part of the JSON).
  public var histogramText: String?

  enum CodingKeys: String, CodingKey {
    case method, transport, mode, calls, messages, elapsed_s, calls_per_s, messages_per_s, bytes, errors, latency, interrupted
  }

  public init(
    method: String, transport: String, mode: String, calls: Int, messages: Int, elapsed: Duration, bytes: Int, errors: [String: Int],
    latency recorder: LatencyRecorder, interrupted: Bool
  ) {
    let seconds = max(Double(elapsed.microseconds) / 1e6, 1e-9)
    self.method = method
    self.transport = transport
    self.mode = mode
    self.calls = calls
    self.messages = messages
    self.elapsed_s = (seconds * 1000).rounded() / 1000
    // Slow methods (Register: a few calls/s) keep two decimals; fast ones whole calls.
    let rate = Double(calls) / seconds
    self.calls_per_s = rate >= 100 ? rate.rounded() : (rate * 100).rounded() / 100
    self.messages_per_s = (Double(messages) / seconds).rounded()
    self.bytes = bytes
    self.errors = errors
    self.latency = Latency(
      p50_us: recorder.percentile(50), p90_us: recorder.percentile(90), p99_us: recorder.percentile(99),
      p999_us: recorder.percentile(99.9), max_us: recorder.maxMicros)
    self.interrupted = interrupted
    self.histogramText = recorder.count > 0 ? recorder.percentileDistribution() : nil
  }

  /// The report as one line of JSON with stable key order.
  public func jsonLine() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
  }

  /// Whole calls per second, or two decimals below 100 (as in the JSON).
  static func rate(_ value: Double) -> String { value >= 100 ? String(Int(value)) : String(format: "%.2f", value) }

  /// A short human summary.
  public var summary: String {
    let errorText = self.errors.isEmpty ? "0" : self.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    return """
      \(self.method) over \(self.transport) (\(self.mode)): \(self.calls) calls, \(self.messages) messages in \(self.elapsed_s) s\(self.interrupted ? " (interrupted)" : "")
        \(Self.rate(self.calls_per_s)) calls/s, \(Int(self.messages_per_s)) messages/s, \(self.bytes) payload bytes
        latency µs: p50 \(self.latency.p50_us)  p90 \(self.latency.p90_us)  p99 \(self.latency.p99_us)  p99.9 \(self.latency.p999_us)  max \(self.latency.max_us)
        errors: \(errorText)
      """
  }
}
