import Foundation
import GRPCCore
import QuizwireProtos

/// `quizwire load` against the quiz service: `quiz.v1.QuizService/GetQuiz` reads one quiz
/// (the demo quiz unless told otherwise; anonymous reads of a published quiz are served from
/// the cache after the first), `quiz.v1.QuizService/ListQuizzes` reads a page of 20 with
/// questions (signed in with `--metadata authorization=Bearer …`, a page the cache never holds).
extension LoadGenerator {
  public static let quizMethods = ["quiz.v1.QuizService/GetQuiz", "quiz.v1.QuizService/ListQuizzes"]
  public static let demoQuizID = "qz_demo_swift_concurrency"

  public func runQuiz<T: ClientTransport>(
    method: String, client: GRPCClient<T>, transportName: String, quizID: String = LoadGenerator.demoQuizID, metadata: Metadata = [:],
    progress: LoadProgress = LoadProgress()
  ) async -> LoadReport {
    let quiz = Quiz_V1_QuizService.Client(wrapping: client)
    let list = method.hasSuffix("/ListQuizzes")
    return await self.drive(method: method, transportName: transportName, progress: progress) { began, _, tally in
      do {
        if list {
          _ = try await quiz.listQuizzes(.with { $0.pageSize = 20 }, metadata: metadata)
        } else {
          _ = try await quiz.getQuiz(.with { $0.id = quizID }, metadata: metadata)
        }
        tally.latency.record(ContinuousClock.now - began)
        tally.calls += 1
        tally.messages += 2
        progress.calls.add(1, ordering: .relaxed)
      } catch {
        tally.failed(error, progress: progress)
      }
    }
  }
}
