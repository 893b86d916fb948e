import Foundation

/// What a load run measured. Encoded as one JSON object (the last line of `quizwire load --json`).
public struct LoadReport: Codable, Sendable, Equatable {
  public struct Latency: Codable, Sendable, Equatable {
    public var p50_us: UInt64
    public var p90_us: UInt64
    public var p99_us: UInt64
    public var p999_us: UInt64
    public var max_us: UInt64

    /// The recorder's percentiles.
    public init(_ recorder: LatencyRecorder) {
      self.p50_us = recorder.percentile(50)
      self.p90_us = recorder.percentile(90)
      self.p99_us = recorder.percentile(99)
      self.p999_us = recorder.percentile(99.9)
      self.max_us = recorder.maxMicros
    }
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
  /// `--scenario play|watch` only (absent from the JSON otherwise): `calls` are completed
  /// attempts with the right score, `calls_per_s` attempts/s, `latency` per answer.
  public var play: PlayStats?

  enum CodingKeys: String, CodingKey {
    case method, transport, mode, calls, messages, elapsed_s, calls_per_s, messages_per_s, bytes, errors, latency, interrupted, play
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
    self.latency = Latency(recorder)
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
      """ + (self.play.map { "\n" + $0.summary } ?? "")
  }
}

/// The play scenario's own figures (the `play` object of the JSON).
public struct PlayStats: Codable, Sendable, Equatable {
  public var players: Int
  /// Accounts the players share round-robin.
  public var users: Int
  public var quiz_id: String
  public var think_time_ms: Int
  /// Answers that got their feedback (each one latency sample).
  public var answers: Int
  /// Streams opened again after RESOURCE_EXHAUSTED (same idempotency key: the attempt resumes).
  public var retries: Int
  /// The most `Play` streams open at once (the server had answered, `finished` not yet read).
  public var peak_streams: Int
  /// One message per error key in `errors` (the first seen), e.g. why a stream was UNAVAILABLE.
  public var error_examples: [String: String]
  /// Registering, signing in and publishing the quiz, before the timed part.
  public var provisioning_s: Double
  /// `--scenario watch` only.
  public var watch: WatchStats?

  /// A short human summary.
  public var summary: String {
    var text =
      "  \(self.players) players, \(self.users) users, \(self.answers) answers, \(self.retries) retries, \(self.peak_streams) streams open at most; provisioning \(self.provisioning_s) s"
    for (key, message) in self.error_examples.sorted(by: { $0.key < $1.key }) { text += "\n  \(key): \(message)" }
    if let w = self.watch {
      let errors = w.errors.isEmpty ? "0" : w.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
      text += """

          \(w.watchers) watchers: \(w.snapshots) snapshots, \(w.deliveries) deliveries (\(w.before_finished) before finished), \
        \(w.unseen_attempts) attempts never shown (not a user's best), \(w.lagging) lagging, errors: \(errors)
          delivery latency µs: p50 \(w.latency.p50_us)  p90 \(w.latency.p90_us)  p99 \(w.latency.p99_us)  p99.9 \(w.latency.p999_us)  max \(w.latency.max_us)
        """
    }
    return text
  }
}
