import Foundation
import Logging
import ServiceKit
import Storage

/// The scoring service's background work (docs/services.md, "Jobs", "Events").
///
/// `scoring.finish_abandoned` (every 30 s): attempts still in progress past their last
/// deadline (the player left and never resumed) are timed out question by question and
/// finished in the job's unit of work, so they reach the leaderboard and the stats with their
/// remaining questions scoring 0. 500 a run; a full batch leaves the rest to the next run.
public enum ScoringJobs {
  public static let finishAbandoned = "scoring.finish_abandoned"
  public static let batch = 500

  public static var recurring: [RecurringJob] { [RecurringJob(kind: finishAbandoned, every: .seconds(30))] }

  public static func handlers(
    hub: LeaderboardHub?, counters: PlayCounters? = nil, now: @escaping @Sendable () -> Int64 = { JobQueue.currentMs() }
  ) -> [JobHandler] {
    [
      JobHandler(kind: finishAbandoned) { _, uow in
        var updates: [(before: AttemptState, after: AttemptState)] = []
        let changed = try await AttemptRepository().finishAbandoned(nowMs: now(), limit: batch, in: uow) { updates.append($0) }
        let finished = updates
        uow.afterCommit {
          for update in finished { counters?.record(before: update.before, after: update.after) }
          guard let hub else { return }
          Task { for quizID in Set(changed) { await hub.changed(quizID: quizID) } }
        }
      }
    ]
  }
}

extension AttemptRepository {
  /// Finishes up to `limit` attempts whose last deadline passed before `nowMs` (time-outs at
  /// each deadline, then `finished`). Returns the quizzes whose boards changed.
  public func finishAbandoned(
    nowMs: Int64, limit: Int, in uow: UnitOfWork, finished: ((before: AttemptState, after: AttemptState)) -> Void = { _ in }
  ) async throws -> [String] {
    var changed: [String] = []
    for id in try await self.abandoned(beforeMs: nowMs, limit: limit, in: uow) {
      guard let state = try await self.find(id: id, in: uow), !state.isFinished else { continue }
      let (next, version) = try await self.append(state.catchUp(nowMs: nowMs), to: state, in: uow)
      finished((state, next))
      if version != nil { changed.append(next.started.quizID) }
    }
    return changed
  }
}
