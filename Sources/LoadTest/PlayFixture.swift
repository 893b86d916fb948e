import Foundation
import GRPCCore
import GRPCProtobuf
import QuizwireProtos

/// What `quizwire load --scenario play|watch` sets up before the timed part: signed-in
/// accounts on the auth service and a published load quiz whose answers the tool knows, so
/// every attempt's score can be checked exactly.
public struct PlayFixture: Sendable {
  /// One question of the load quiz as the tool knows it.
  public struct Question: Sendable, Hashable {
    public var id: String
    public var choiceIDs: [String]
    public var correct: [String]
    public var points: Int32
  }

  public var quizID: String
  public var questions: [Question]
  /// Bearer access tokens, one per account (15 minutes: the timed part must fit).
  public var tokens: [String]
  /// How long provisioning took (registrations dominate: a production scrypt hash each).
  public var elapsed: Duration

  public init(quizID: String, questions: [Question], tokens: [String], elapsed: Duration) {
    self.quizID = quizID
    self.questions = questions
    self.tokens = tokens
    self.elapsed = elapsed
  }

  /// The deterministic answer pattern: player `player` in its attempt `attempt` answers question
  /// `index` correctly unless `(player + attempt + index) % 4 == 0`. A wrong answer is the first
  /// correct choice alone (every load question has two correct ones), so it also checks that
  /// MULTIPLE_CHOICE is all-or-nothing.
  public func answer(player: Int, attempt: Int, index: Int) -> (choices: [String], correct: Bool) {
    let q = self.questions[index]
    let correct = (player + attempt + index) % 4 != 0
    return (correct ? q.correct : [q.correct[0]], correct)
  }

  /// The score that pattern must earn.
  public func expectedScore(player: Int, attempt: Int) -> Int32 {
    self.questions.indices.reduce(0) { sum, i in sum + (self.answer(player: player, attempt: attempt, index: i).correct ? self.questions[i].points : 0) }
  }

  /// The load quiz: five MULTIPLE_CHOICE questions worth 1…5 points, two correct choices of
  /// four each, `timeLimitSeconds` per question (generous, so that a queue on the server never
  /// makes an answer late and the score wrong).
  public static func loadQuiz(runID: String, timeLimitSeconds: Int32) -> Quiz_V1_Quiz {
    .with {
      $0.title = "Load quiz \(runID)"
      $0.description_p = "Made by quizwire load; the answers are known to the tool."
      $0.tags = ["load"]
      $0.questionTimeLimitSeconds = timeLimitSeconds
      $0.questions = (1...5).map { n in
        .with {
          $0.kind = .multipleChoice
          $0.prompt = "Load question \(n): pick choices b and d"
          $0.points = Int32(n)
          $0.choices = ["a", "b", "c", "d"].map { id in
            .with {
              $0.id = id
              $0.text = "Choice \(id)"
            }
          }
          $0.answerKey = .with { $0.correctChoiceIds = ["b", "d"] }
        }
      }
    }
  }

  /// Registers `users` accounts (`play-<run>-<n>@example.com`), signs each in, and creates and
  /// publishes the load quiz as the first of them. At most `parallelism` accounts at a time:
  /// the auth service hashes two passwords at once and queues 64, so more would only be
  /// refused. A refusal with RESOURCE_EXHAUSTED (the hashing queue, the anonymous per-address
  /// rate limit, a busy database) is waited out for its RetryInfo delay and retried.
  public static func provision<A: ClientTransport, Q: ClientTransport>(
    auth: GRPCClient<A>, quiz: GRPCClient<Q>, users: Int, runID: String, timeLimitSeconds: Int32 = 600, parallelism: Int = 4,
    log: @escaping @Sendable (String) -> Void = { _ in }
  ) async throws -> PlayFixture {
    let start = ContinuousClock.now
    let authAPI = Auth_V1_AuthService.Client(wrapping: auth)
    let next = SharedCounter(0)
    let done = SharedCounter(0)
    let tokens = try await withThrowingTaskGroup(of: [(Int, String)].self) { group in
      for _ in 0..<max(1, min(parallelism, users)) {
        group.addTask {
          var mine: [(Int, String)] = []
          while true {
            let n = next.add(1) - 1
            guard n < users else { return mine }
            let email = "play-\(runID)-\(n)@example.com"
            _ = try await retryingWhenExhausted {
              try await authAPI.register(
                .with {
                  $0.email = email
                  $0.password = LoadGenerator.registerPassword
                  $0.displayName = "Player \(n)"
                })
            }
            let session = try await retryingWhenExhausted {
              try await authAPI.login(
                .with {
                  $0.email = email
                  $0.password = LoadGenerator.registerPassword
                })
            }
            mine.append((n, session.accessToken))
            let count = done.add(1)
            if count % 10 == 0 || count == users { log("provisioned \(count)/\(users) accounts") }
          }
        }
      }
      var all: [(Int, String)] = []
      for try await part in group { all += part }
      return all.sorted { $0.0 < $1.0 }.map(\.1)
    }
    let quizAPI = Quiz_V1_QuizService.Client(wrapping: quiz)
    let author: Metadata = ["authorization": .string("Bearer \(tokens[0])")]
    let created = try await retryingWhenExhausted {
      try await quizAPI.createQuiz(.with { $0.quiz = loadQuiz(runID: runID, timeLimitSeconds: timeLimitSeconds) }, metadata: author)
    }
    _ = try await retryingWhenExhausted { try await quizAPI.publishQuiz(.with { $0.id = created.id }, metadata: author) }
    let questions = created.questions.map {
      Question(id: $0.id, choiceIDs: $0.choices.map(\.id), correct: $0.answerKey.correctChoiceIds, points: $0.points)
    }
    log("published load quiz \(created.id)")
    return PlayFixture(quizID: created.id, questions: questions, tokens: tokens, elapsed: ContinuousClock.now - start)
  }
}

/// Runs `body`, and while it fails with RESOURCE_EXHAUSTED waits the delay the server asked
/// for (`google.rpc.RetryInfo`, else `retry-after-ms`, else one second) and tries again, at
/// most `attempts` times in all.
public func retryingWhenExhausted<R: Sendable>(attempts: Int = 30, _ body: () async throws -> R) async throws -> R {
  var tries = 0
  while true {
    do {
      return try await body()
    } catch let error as RPCError where error.code == .resourceExhausted && tries + 1 < attempts {
      tries += 1
      try await Task.sleep(for: retryDelay(of: error))
    }
  }
}

/// The wait a RESOURCE_EXHAUSTED refusal asks for, capped at 30 s.
public func retryDelay(of error: RPCError) -> Duration {
  if let delay = (try? error.unpackGoogleRPCStatus())?.details.compactMap(\.retryInfo).first?.delay {
    return min(max(delay, .milliseconds(1)), .seconds(30))
  }
  if let text = error.metadata[stringValues: "retry-after-ms"].first(where: { _ in true }), let ms = Int64(text) {
    return .milliseconds(min(max(ms, 1), 30_000))
  }
  return .seconds(1)
}
