import Foundation
import Logging
import ServiceKit
import Storage

/// The quiz service's background jobs (docs/services.md, "Jobs").
///
/// `quiz.recompute_stats`: the payload is a quiz id; the run recomputes the quiz's
/// `quiz_statistics` row (question count, total points). Enqueued by a questions import in
/// the import's unit of work, so an import that rolls back asks for nothing.
public enum QuizJobs {
  public static let recomputeStats = "quiz.recompute_stats"

  /// Asks for quiz `quizID`'s statistics to be recomputed, in the change's unit of work.
  public static func enqueueRecompute(quizID: String, in uow: UnitOfWork) async throws {
    try await JobQueue.enqueue(kind: recomputeStats, payload: Data(quizID.utf8), maxAttempts: 5, in: uow)
  }

  public static func handlers(now: @escaping @Sendable () -> Int64 = { JobQueue.currentMs() }) -> [JobHandler] {
    [
      JobHandler(kind: recomputeStats) { job, uow in
        guard let quizID = String(data: job.payload, encoding: .utf8), !quizID.isEmpty else {
          throw PermanentJobError("the payload is not a quiz id")
        }
        try await QuizStatisticsRepository.recompute(quizID: quizID, nowMs: now(), in: uow)
      }
    ]
  }
}
