import Foundation
import GRPCCore
import QuizwireProtos
import Synchronization

/// What the watchers of `--scenario watch` saw.
public struct WatchStats: Codable, Sendable, Equatable {
  public var watchers: Int
  /// Snapshots received by all watchers (coalesced: a slow watcher gets only the newest).
  public var snapshots: Int
  /// (watcher, attempt) pairs measured: a watcher's first snapshot holding that attempt.
  public var deliveries: Int
  /// Deliveries that reached the watcher before the player had read its `finished` (the
  /// board changes in the same step; counted as 0 µs).
  public var before_finished: Int
  /// Attempts completed by the players that no watcher ever saw: they didn't change the top
  /// 100 (not better than their user's best, or below the 100th), or were superseded before
  /// a snapshot was taken.
  public var unseen_attempts: Int
  /// Watchers that hadn't reached the board's final version when the run ended.
  public var lagging: Int
  /// The board's version after the last attempt (GetLeaderboard).
  public var final_version: Int64
  /// Failed watch streams by status.
  public var errors: [String: Int]
  /// Delivery latency: the player's receipt of `finished` → the watcher's receipt of a snapshot holding it.
  public var latency: LoadReport.Latency
}

/// W watchers of one quiz's leaderboard (`WatchLeaderboard`, top 100, anonymous).
final class WatchRun: Sendable {
  /// One watcher's record, behind its own lock (watchers never contend with each other).
  final class Watcher: Sendable {
    struct State {
      var seen: [String: ContinuousClock.Instant] = [:]
      var snapshots = 0
      var version: Int64 = -1
      var error: String?
    }
    let state = Mutex(State())
  }

  let quizID: String
  let watchers: [Watcher]

  init(quizID: String, count: Int) {
    self.quizID = quizID
    self.watchers = (0..<max(0, count)).map { _ in Watcher() }
  }

  /// Runs every watcher until cancelled.
  func run<T: ClientTransport>(api: Scoring_V1_ScoringService.Client<T>) async {
    await withTaskGroup(of: Void.self) { group in
      for watcher in self.watchers {
        group.addTask { await self.watch(watcher, api: api) }
      }
    }
  }

  private func watch<T: ClientTransport>(_ watcher: Watcher, api: Scoring_V1_ScoringService.Client<T>) async {
    do {
      // The anonymous per-address rate limit may refuse a burst of watchers: wait it out.
      try await retryingWhenExhausted {
        try await api.watchLeaderboard(
          .with {
            $0.quizID = self.quizID
            $0.topN = 100
          }
        ) { response in
          for try await snapshot in response.messages {
            let now = ContinuousClock.now
            watcher.state.withLock { s in
              s.snapshots += 1
              s.version = max(s.version, snapshot.version)
              for entry in snapshot.entries where s.seen[entry.attemptID] == nil { s.seen[entry.attemptID] = now }
            }
          }
        }
      }
    } catch let error as RPCError {
      if !Task.isCancelled { watcher.state.withLock { $0.error = "\(error.code)" } }
    } catch {
      if !Task.isCancelled { watcher.state.withLock { $0.error = "\(type(of: error))" } }
    }
  }

  /// Waits until every watcher has its first snapshot (or failed), at most `timeout`.
  func waitUntilConnected(timeout: Duration) async {
    await self.wait(timeout: timeout) { $0.snapshots > 0 || $0.error != nil }
  }

  /// Waits until every watcher has seen `version` (or failed), at most `timeout`.
  func waitForVersion(_ version: Int64, timeout: Duration) async {
    await self.wait(timeout: timeout) { $0.version >= version || $0.error != nil }
  }

  private func wait(timeout: Duration, until done: @Sendable (Watcher.State) -> Bool) async {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end, !self.watchers.allSatisfy({ $0.state.withLock { done($0) } }) {
      try? await Task.sleep(for: .milliseconds(10))
    }
  }

  /// Delivery latencies against the players' `finished` receipts.
  func stats(finished: [String: ContinuousClock.Instant], finalVersion: Int64?) -> WatchStats {
    var latency = LatencyRecorder()
    var snapshots = 0
    var early = 0
    var lagging = 0
    var errors: [String: Int] = [:]
    var seenAny = Set<String>()
    for watcher in self.watchers {
      let s = watcher.state.withLock { $0 }
      snapshots += s.snapshots
      if let error = s.error { errors[error, default: 0] += 1 }
      if let finalVersion, s.version < finalVersion { lagging += 1 }
      for (id, at) in s.seen {
        guard let finishedAt = finished[id] else { continue }
        seenAny.insert(id)
        if at < finishedAt { early += 1 }
        latency.record(max(.zero, at - finishedAt))
      }
    }
    return WatchStats(
      watchers: self.watchers.count, snapshots: snapshots, deliveries: Int(latency.count), before_finished: early,
      unseen_attempts: finished.keys.filter { !seenAny.contains($0) }.count, lagging: lagging, final_version: finalVersion ?? -1,
      errors: errors, latency: LoadReport.Latency(latency))
  }
}
