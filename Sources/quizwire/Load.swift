import ArgumentParser
import Dispatch
import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import LoadTest

struct Load: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Drive bench.v1.EchoService (or auth sign-ups) and report throughput and latency percentiles.",
    discussion: """
      Closed loop (--concurrency) or open loop (--rate, latencies measured from each call's due time).
      Every run stops at --duration or --requests; Ctrl-C prints the partial report.
      Example: quizwire load --framed 127.0.0.1:7400 --method bench.v1.EchoService/Unary --concurrency 64 --duration 30s
      \(LoadGenerator.registerMethod) signs up a new account per call (load-<run>-<n>@example.com):
      quizwire load --framed 127.0.0.1:7410 --method \(LoadGenerator.registerMethod) --concurrency 16 --duration 30s
      quiz.v1.QuizService/GetQuiz reads --quiz-id (default the demo quiz); quiz.v1.QuizService/ListQuizzes reads a page of 20
      (as the caller of --metadata authorization=Bearer <token>; anonymous pages are cached).
      --scenario play: --players virtual players over scoring.v1.ScoringService/Play (--framed or --grpc: the scoring
      service). Before the timed part it registers --users accounts on --auth (shared round-robin by the players) and
      publishes a load quiz on --quiz whose answers it knows; every attempt's final score is checked (a mismatch is an
      error, wrong_score). Players answer after --think-time and play until --duration, or --requests attempts in all;
      --ramp-up spreads their starts. Reports attempts/s (calls), per-answer latency (answer sent → feedback).
      quizwire load --scenario play --framed 127.0.0.1:7430 --players 100 --think-time 100ms --duration 30s
      --scenario watch: the same with --watchers leaderboard watchers (WatchLeaderboard, top 100) and the delivery
      latency from a player's `finished` to a watcher's snapshot holding that attempt.
      """)

  @Option(help: "Target over the framed wire (host:port).") var framed: String?
  @Option(help: "Target over gRPC/HTTP2 (host:port).") var grpc: String?
  @Option(help: "Method: \((LoadMethod.allCases.map(\.rawValue) + [LoadGenerator.registerMethod] + LoadGenerator.quizMethods).joined(separator: ", "))")
  var method = LoadMethod.unary.rawValue
  @Option(help: "The quiz GetQuiz reads.") var quizID = LoadGenerator.demoQuizID
  @Option(name: .customLong("metadata"), help: "Request metadata key=value (repeatable; quiz methods).") var metadata: [String] = []
  @Option(help: "Calls in flight (closed loop).") var concurrency = 1
  @Option(help: "Calls started per second (open loop).") var rate: Double?
  @Option(help: "How long to run, e.g. 30s, 500ms, 2m.") var duration = "10s"
  @Option(help: "Stop after this many calls.") var requests: Int?
  @Option(help: "Payload bytes per message.") var payloadSize = 64
  @Option(help: "Messages per stream for the streaming methods.") var messagesPerStream = 100
  @Flag(help: "Print the report as one JSON object on the last line.") var json = false
  @Option(help: "Write the latency distribution (HdrHistogram percentile format, µs) to this file.") var histogramOut: String?
  @Option(help: "play: players over scoring's Play; watch: players plus leaderboard watchers.") var scenario: String?
  @Option(help: "play/watch: the auth service (framed host:port) that provisions the accounts.") var auth = "127.0.0.1:7410"
  @Option(help: "play/watch: the quiz service (framed host:port) that gets the load quiz.") var quiz = "127.0.0.1:7420"
  @Option(help: "play/watch: concurrent virtual players.") var players = 10
  @Option(help: "play/watch: accounts the players share (default min(players, 50)).") var users: Int?
  @Option(help: "play/watch: pause before each answer, e.g. 100ms (0 for none).") var thinkTime = "100ms"
  @Option(help: "play/watch: spread the players' starts over this long, e.g. 2s (default 0).") var rampUp = "0"
  @Option(help: "watch: leaderboard watchers (default 10).") var watchers = 10

  func validate() throws {
    guard (framed == nil) != (grpc == nil) else { throw ValidationError("give exactly one of --framed or --grpc") }
    if let scenario {
      try self.validatePlay(scenario)
      return
    }
    guard LoadMethod(rawValue: method) != nil || method == LoadGenerator.registerMethod || LoadGenerator.quizMethods.contains(method) else {
      throw ValidationError("unknown --method \(method)")
    }
    guard (1...100_000).contains(concurrency), (0...(64 << 20)).contains(payloadSize), (1...10_000_000).contains(messagesPerStream) else {
      throw ValidationError("--concurrency must be 1...100000, --payload-size 0...67108864, --messages-per-stream 1...10000000")
    }
    if let rate, !(rate.isFinite && rate >= 0.001 && rate <= 10_000_000) {
      throw ValidationError("--rate takes calls per second between 0.001 and 10000000")
    }
    if let requests, requests < 1 { throw ValidationError("--requests must be ≥ 1") }
    for m in metadata where m.split(separator: "=", maxSplits: 1).count != 2 { throw ValidationError("--metadata takes key=value, got \(m)") }
    _ = try Self.parseDuration(duration)
  }

  static func parseDuration(_ text: String, option: String = "--duration", allowZero: Bool = false) throws -> Duration {
    if allowZero, text == "0" { return .zero }
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
      // At least 1 ms and at most a week: anything else is a typo, not a run.
      if let v = Double(text.dropLast(suffix.count)), v.isFinite, v * scale >= 0.001, v * scale <= 7 * 86_400 {
        return .milliseconds(Int64(v * scale * 1000))
      }
    }
    throw ValidationError("\(option) takes a number with ms, s, m or h between 1ms and 7 days, e.g. 30s; got \(text)")
  }

  func run() async throws {
    var options = LoadOptions()
    options.method = LoadMethod(rawValue: method) ?? .unary
    options.concurrency = concurrency
    options.rate = rate
    options.duration = try Self.parseDuration(duration)
    options.requests = requests
    options.payloadSize = payloadSize
    options.messagesPerStream = messagesPerStream
    let progress = LoadProgress()
    let signals = SignalWatcher { progress.stop() }
    defer { signals.cancel() }
    if self.scenario != nil {
      let report = try await self.runPlay(progress: progress)
      try self.finish(report, ticked: isatty(STDERR_FILENO) == 1)
      return
    }
    let ticker = isatty(STDERR_FILENO) == 1 ? Self.progressLine(progress) : nil
    defer { ticker?.cancel() }

    let report: LoadReport
    if let framed {
      guard let target = FramedTarget(framed) else { throw ValidationError("--framed takes host:port") }
      let transport = try FramedClientTransport(config: .init(targets: [target]))
      report = try await withGRPCClient(transport: transport) { await self.run(options, client: $0, transportName: "framed", progress: progress) }
    } else {
      guard let grpc, let target = FramedTarget(grpc) else { throw ValidationError("--grpc takes host:port") }
      let transport = try HTTP2ClientTransport.Posix(target: target.resolvableTarget, transportSecurity: .plaintext)
      report = try await withGRPCClient(transport: transport) { await self.run(options, client: $0, transportName: "h2", progress: progress) }
    }
    try self.finish(report, ticked: ticker != nil)
  }

  /// Prints the report (and writes the histogram file).
  func finish(_ report: LoadReport, ticked: Bool) throws {
    if ticked { FileHandle.standardError.write("\n".data(using: .utf8)!) }
    if let histogramOut {
      // The report keeps percentiles; the distribution file comes from the generator's histogram.
      try (report.histogramText ?? "").write(toFile: histogramOut, atomically: true, encoding: .utf8)
    }
    print(report.summary)
    if json { print(report.jsonLine()) }
    if report.calls == 0 { throw ExitCode(1) }
  }

  func run<T: ClientTransport>(_ options: LoadOptions, client: GRPCClient<T>, transportName: String, progress: LoadProgress) async -> LoadReport {
    let generator = LoadGenerator(options: options)
    if self.method == LoadGenerator.registerMethod {
      return await generator.runRegister(client: client, transportName: transportName, progress: progress)
    }
    if LoadGenerator.quizMethods.contains(self.method) {
      var md = Metadata()
      for m in self.metadata {
        let parts = m.split(separator: "=", maxSplits: 1)
        md.addString(String(parts[1]), forKey: String(parts[0]).lowercased())
      }
      return await generator.runQuiz(
        method: self.method, client: client, transportName: transportName, quizID: self.quizID, metadata: md, progress: progress)
    }
    return await generator.run(client: client, transportName: transportName, progress: progress)
  }

  /// A live "rate, errors, elapsed" line on stderr, only when it is a terminal.
  static func progressLine(_ progress: LoadProgress, unit: String = "calls") -> Task<Void, Never> {
    Task {
      let start = ContinuousClock.now
      var last = 0
      while !Task.isCancelled {
        try? await Task.sleep(for: .seconds(1))
        let calls = progress.completedCalls
        let elapsed = Double((ContinuousClock.now - start).microseconds) / 1e6
        FileHandle.standardError.write("\r\(Int(elapsed.rounded())) s  \(calls - last) \(unit)/s  \(progress.failedCalls) errors   ".data(using: .utf8)!)
        last = calls
      }
    }
  }
}

struct Bench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Compare raw NIO, GRPCCore in-process, the framed wire and gRPC/HTTP2 in one run (use -c release).",
    discussion: "Scenarios: \(Benchmark.scenarioNames.joined(separator: ", ")). The last line is one JSON object.")

  @Flag(help: "A short run (about a minute in all).") var quick = false
  @Option(help: "Run only this scenario (repeatable).") var scenario: [String] = []

  func validate() throws {
    for s in scenario where !Benchmark.scenarioNames.contains(s) {
      throw ValidationError("unknown scenario \(s); known: \(Benchmark.scenarioNames.joined(separator: ", "))")
    }
  }

  func run() async throws {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let bench = Benchmark(quick: quick, executable: exe) { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }
    let names = scenario.isEmpty ? Benchmark.scenarioNames : scenario
    let results = try await bench.run(scenarios: names)
    print(BenchOutput.table(results, order: names))
    print(BenchOutput.json(results, quick: quick))
  }
}

/// SIGINT / SIGTERM stop a load run early (it then prints the partial report) instead of
/// killing the process. Servers use swift-service-lifecycle instead (see `runHosts`).
final class SignalWatcher {
  private let sources: [any DispatchSourceSignal]

  init(onSignal: @escaping @Sendable () -> Void) {
    self.sources = [SIGINT, SIGTERM].map { sig in
      signal(sig, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
      source.setEventHandler { onSignal() }
      source.resume()
      return source
    }
  }

  func cancel() { for s in self.sources { s.cancel() } }
}
