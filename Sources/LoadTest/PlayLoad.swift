import Foundation
import GRPCCore
import QuizwireProtos
import Synchronization

/// The shape of a `--scenario play` (or `watch`) run.
public struct PlayLoadOptions: Sendable {
  /// Virtual players, each playing attempts back to back on its own `Play` stream.
  public var players = 10
  /// Pause between receiving a question and answering it.
  public var thinkTime: Duration = .milliseconds(100)
  /// No player starts a new attempt after this (a started one is played to the end).
  public var duration: Duration? = .seconds(10)
  /// Attempts in all, split evenly over the players (`--requests`); nil: until `duration`.
  public var attempts: Int?
  /// Player `i` starts at `rampUp * i / players`, so starts don't all hit the writer at once.
  public var rampUp: Duration = .zero
  /// Leaderboard watchers (`--scenario watch`); 0 for none.
  public var watchers = 0
  /// A stream refused with RESOURCE_EXHAUSTED (a busy database) is opened again this many times
  /// with the same idempotency key — which resumes the same attempt at its current question.
  public var retries = 5
  /// Keeps idempotency keys unique across runs against the same database.
  public var runID = LoadGenerator.makeRunID()

  public init() {}
}

/// `quizwire load --scenario play`: virtual players over `scoring.v1.ScoringService/Play`, each
/// signed in as one of the fixture's accounts (shared round-robin; the service allows a user
/// any number of attempts at once), answering with the fixture's deterministic pattern, the
/// final score checked exactly. Latency is per answer: answer sent → its feedback received.
public struct PlayLoad: Sendable {
  public static let method = "scoring.v1.ScoringService/Play"
  public let options: PlayLoadOptions
  public let fixture: PlayFixture

  public init(options: PlayLoadOptions, fixture: PlayFixture) {
    self.options = options
    self.fixture = fixture
  }

  /// Streams open right now (from the server's first answer to the end) and the most at once.
  final class StreamGauge: Sendable {
    private let open = Synchronization.Atomic<Int>(0)
    private let highest = Synchronization.Atomic<Int>(0)
    func opened() {
      let now = self.open.add(1, ordering: .relaxed).newValue
      var seen = self.highest.load(ordering: .relaxed)
      while now > seen {
        let (exchanged, original) = self.highest.compareExchange(expected: seen, desired: now, ordering: .relaxed)
        if exchanged { break }
        seen = original
      }
    }
    func closed() { self.open.subtract(1, ordering: .relaxed) }
    var peak: Int { self.highest.load(ordering: .relaxed) }
  }

  /// Per-player tallies, merged at the end.
  struct Tally: Sendable {
    var latency = LatencyRecorder()
    var attempts = 0
    var answers = 0
    var messages = 0
    var retries = 0
    var errors: [String: Int] = [:]
    /// The first message seen for each error (what a status alone doesn't say).
    var examples: [String: String] = [:]
    /// Attempt id → when its player received `finished` (the watch scenario's start point).
    var finished: [String: ContinuousClock.Instant] = [:]

    mutating func merge(_ o: Tally) {
      self.latency.merge(o.latency)
      self.attempts += o.attempts
      self.answers += o.answers
      self.messages += o.messages
      self.retries += o.retries
      self.errors.merge(o.errors, uniquingKeysWith: +)
      self.examples.merge(o.examples) { a, _ in a }
      self.finished.merge(o.finished) { a, _ in a }
    }
  }

  /// What one `Play` stream did.
  struct StreamResult: Sendable {
    var latency = LatencyRecorder()
    var answers = 0
    var messages = 0
    var attemptID: String?
    var finalScore: Int32?
    var finishedAt: ContinuousClock.Instant?
    var wrongFeedback = false
    var failure: RPCError?
    var problem: String?
  }

  /// Runs the players (and, with `options.watchers`, the watchers on `watchClient`, or on
  /// `scoring` when nil: keep them on a connection of their own when players fill the
  /// server's 1,024 streams per connection) and reports.
  public func run<T: ClientTransport>(
    scoring: GRPCClient<T>, watchClient: GRPCClient<T>? = nil, transportName: String, progress: LoadProgress = LoadProgress()
  ) async -> LoadReport {
    let api = Scoring_V1_ScoringService.Client(wrapping: scoring)
    let watch = WatchRun(quizID: self.fixture.quizID, count: self.options.watchers)
    let watchAPI = Scoring_V1_ScoringService.Client(wrapping: watchClient ?? scoring)
    let watching = self.options.watchers > 0 ? Task { await watch.run(api: watchAPI) } : nil
    if watching != nil { await watch.waitUntilConnected(timeout: .seconds(20)) }

    let start = ContinuousClock.now
    let deadline = self.options.duration.map { start + $0 }
    let players = max(1, self.options.players)
    let gauge = StreamGauge()
    let tally = await withTaskGroup(of: Tally.self) { group in
      for p in 0..<players {
        group.addTask { await self.player(p, of: players, api: api, deadline: deadline, gauge: gauge, progress: progress) }
      }
      var all = Tally()
      for await t in group { all.merge(t) }
      return all
    }
    let elapsed = ContinuousClock.now - start

    var watchStats: WatchStats?
    if let watching {
      let finalVersion = try? await retryingWhenExhausted {
        try await api.getLeaderboard(
          .with {
            $0.quizID = self.fixture.quizID
            $0.pageSize = 1
          }
        ).version
      }
      await watch.waitForVersion(finalVersion ?? 0, timeout: .seconds(10))
      watching.cancel()
      _ = await watching.value
      watchStats = watch.stats(finished: tally.finished, finalVersion: finalVersion)
    }

    var report = LoadReport(
      method: Self.method, transport: transportName,
      mode: "closed loop, \(players) players (\(self.fixture.tokens.count) users), think \(self.options.thinkTime.microseconds / 1000) ms",
      calls: tally.attempts, messages: tally.messages, elapsed: elapsed, bytes: 0, errors: tally.errors, latency: tally.latency,
      interrupted: progress.isStopped)
    report.play = PlayStats(
      players: players, users: self.fixture.tokens.count, quiz_id: self.fixture.quizID, think_time_ms: Int(self.options.thinkTime.microseconds / 1000),
      answers: tally.answers, retries: tally.retries, peak_streams: gauge.peak, error_examples: tally.examples,
      provisioning_s: Double(self.fixture.elapsed.microseconds / 1000) / 1000,
      watch: watchStats)
    return report
  }

  /// One virtual player: its share of `options.attempts` (or attempts until the deadline).
  func player<T: ClientTransport>(
    _ p: Int, of players: Int, api: Scoring_V1_ScoringService.Client<T>, deadline: ContinuousClock.Instant?, gauge: StreamGauge,
    progress: LoadProgress
  ) async -> Tally {
    var t = Tally()
    if self.options.rampUp > .zero {
      try? await Task.sleep(for: self.options.rampUp * (Double(p) / Double(players)))
    }
    let quota = self.options.attempts.map { $0 / players + (p < $0 % players ? 1 : 0) } ?? Int.max
    var k = 0
    while k < quota, !progress.isStopped, deadline.map({ ContinuousClock.now < $0 }) ?? true {
      await self.attempt(player: p, number: k, api: api, gauge: gauge, progress: progress, tally: &t)
      k += 1
    }
    return t
  }

  /// One attempt, opened again with the same key after a RESOURCE_EXHAUSTED (it resumes).
  func attempt<T: ClientTransport>(
    player p: Int, number k: Int, api: Scoring_V1_ScoringService.Client<T>, gauge: StreamGauge, progress: LoadProgress, tally t: inout Tally
  ) async {
    let metadata: Metadata = ["authorization": .string("Bearer \(self.fixture.tokens[p % self.fixture.tokens.count])")]
    let key = "load-\(self.options.runID)-\(p)-\(k)"
    var tries = 0
    while true {
      let r = await self.stream(player: p, number: k, key: key, api: api, metadata: metadata, gauge: gauge, progress: progress)
      t.latency.merge(r.latency)
      t.answers += r.answers
      t.messages += r.messages
      if let failure = r.failure, failure.code == .resourceExhausted, tries < self.options.retries, !progress.isStopped {
        tries += 1
        t.retries += 1
        try? await Task.sleep(for: retryDelay(of: failure))
        continue
      }
      let problem: String?
      if let failure = r.failure {
        problem = "\(failure.code)"
      } else if let problemText = r.problem {
        problem = problemText
      } else if r.finalScore != self.fixture.expectedScore(player: p, attempt: k) {
        problem = "wrong_score"
      } else if r.wrongFeedback {
        problem = "wrong_feedback"
      } else {
        problem = nil
      }
      if let problem {
        t.errors[problem, default: 0] += 1
        if t.examples[problem] == nil { t.examples[problem] = r.failure?.message ?? problem }
        progress.errors.add(1, ordering: .relaxed)
      } else {
        t.attempts += 1
        if let id = r.attemptID, let at = r.finishedAt { t.finished[id] = at }
        progress.calls.add(1, ordering: .relaxed)
      }
      return
    }
  }

  /// One `Play` stream: start (or resume, by the key), answer each question after the think
  /// time, until `finished`. The request side stays open until the last answer is sent: the
  /// server ends the attempt's stream when the client half-closes.
  func stream<T: ClientTransport>(
    player p: Int, number k: Int, key: String, api: Scoring_V1_ScoringService.Client<T>, metadata: Metadata, gauge: StreamGauge,
    progress: LoadProgress
  ) async -> StreamResult {
    let (requests, sink) = AsyncStream.makeStream(of: Scoring_V1_PlayRequest.self)
    sink.yield(
      .with {
        $0.start = .with {
          $0.quizID = self.fixture.quizID
          $0.idempotencyKey = key
        }
      })
    do {
      return try await api.play(
        metadata: metadata,
        requestProducer: { writer in
          for await request in requests { try await writer.write(request) }
        },
        onResponse: { response in
          defer { sink.finish() }
          gauge.opened()
          defer { gauge.closed() }
          var r = StreamResult(messages: 1)
          var sentAt: ContinuousClock.Instant?
          var expected: [String: Bool] = [:]
          do {
            for try await event in response.messages {
              r.messages += 1
              switch event.kind {
              case .question(let q):
                let index = Int(q.index)
                guard index < self.fixture.questions.count, q.question.id == self.fixture.questions[index].id else {
                  r.problem = "wrong_question"
                  return r
                }
                r.attemptID = q.attemptID
                if self.options.thinkTime > .zero { try await Task.sleep(for: self.options.thinkTime) }
                let answer = self.fixture.answer(player: p, attempt: k, index: index)
                expected[q.question.id] = answer.correct
                sentAt = ContinuousClock.now
                sink.yield(
                  .with {
                    $0.answer = .with {
                      $0.questionID = q.question.id
                      $0.choiceIds = answer.choices
                    }
                  })
                r.messages += 1
                // After the last answer the request side is closed: the server reads the
                // answer before the end of the stream, and the call then ends cleanly on both
                // sides (left open, the HTTP/2 client resets every finished stream, and
                // NIOHTTP2 closes a connection that sees more than 200 resets in 30 s).
                if index == self.fixture.questions.count - 1 { sink.finish() }
              case .feedback(let f):
                if let s = sentAt { r.latency.record(ContinuousClock.now - s) }
                sentAt = nil
                r.answers += 1
                if f.late || expected[f.questionID] != f.correct { r.wrongFeedback = true }
              case .finished(let f):
                r.finishedAt = ContinuousClock.now
                r.attemptID = f.attempt.id
                r.finalScore = f.attempt.state == .finished ? f.attempt.score : nil
                // Read on to the end of the stream: leaving before the trailers arrive
                // cancels the call, and the HTTP/2 client then resets the stream — 1,000
                // of those on one connection trip NIOHTTP2's reset-rate guard (GOAWAY
                // ENHANCE_YOUR_CALM) and every stream on it fails.
                continue
              case .rejected(let rejected):
                r.problem = "rejected_\(rejected.code)"
                return r
              case .none:
                continue
              }
            }
            if r.finishedAt == nil { r.problem = r.problem ?? "ended_without_finished" }
          } catch let error as RPCError {
            r.failure = error
          } catch {
            r.problem = progress.isStopped ? "interrupted" : "\(type(of: error))"
          }
          return r
        })
    } catch let error as RPCError {
      var r = StreamResult()
      r.failure = error
      return r
    } catch {
      var r = StreamResult()
      r.problem = "\(type(of: error))"
      return r
    }
  }
}
