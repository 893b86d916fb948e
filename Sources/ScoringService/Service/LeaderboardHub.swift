import Foundation
import QuizwireProtos
import Storage
import Synchronization

/// Leaderboard fan-out, per replica. Each quiz with watchers has one shared snapshot (the top
/// 100 as the projection table has it, at its version), built once per change and handed to
/// every watcher; each watcher holds at most one pending snapshot (the newest: its stream
/// buffers newest-1), so a slow reader never holds back the others or grows memory.
public final class LeaderboardHub: Sendable {
  public static let maxTop = 100

  struct Watchers {
    var next = 0
    var continuations: [Int: AsyncStream<Scoring_V1_LeaderboardSnapshot>.Continuation] = [:]
    var latest: Scoring_V1_LeaderboardSnapshot?
  }

  private let quizzes = Mutex<[String: Watchers]>([:])
  /// Builds a quiz's shared snapshot from the projection (names included).
  let load: @Sendable (String) async throws -> Scoring_V1_LeaderboardSnapshot

  public init(load: @escaping @Sendable (String) async throws -> Scoring_V1_LeaderboardSnapshot) {
    self.load = load
  }

  /// A stream of the quiz's snapshots, starting with the current one.
  func watch(quizID: String) async throws -> (id: Int, stream: AsyncStream<Scoring_V1_LeaderboardSnapshot>) {
    let (stream, continuation) = AsyncStream.makeStream(of: Scoring_V1_LeaderboardSnapshot.self, bufferingPolicy: .bufferingNewest(1))
    let (id, latest) = self.quizzes.withLock { quizzes in
      var watchers = quizzes[quizID] ?? Watchers()
      let id = watchers.next
      watchers.next += 1
      watchers.continuations[id] = continuation
      quizzes[quizID] = watchers
      return (id, watchers.latest)
    }
    if let latest {
      continuation.yield(latest)
    } else {
      // Watchers skip versions they have seen, so a snapshot yielded twice is harmless.
      let snapshot = try await self.load(quizID)
      self.publish(quizID: quizID, snapshot: snapshot)
      continuation.yield(snapshot)
    }
    return (id, stream)
  }

  func unwatch(quizID: String, id: Int) {
    self.quizzes.withLock { quizzes in
      quizzes[quizID]?.continuations[id]?.finish()
      quizzes[quizID]?.continuations[id] = nil
      if quizzes[quizID]?.continuations.isEmpty == true { quizzes[quizID] = nil }
    }
  }

  /// The board of `quizID` changed to `version` (this replica's commit; `.max` when unknown: an
  /// `attempt.finished` of any replica seen on the scoring feed): one reload for all its
  /// watchers, none when nobody watches or the version was handed out already.
  public func changed(quizID: String, version: Int64 = .max) async {
    let watched = self.quizzes.withLock { quizzes -> Bool in
      guard let watchers = quizzes[quizID] else { return false }
      return (watchers.latest?.version ?? -1) < version
    }
    guard watched, let snapshot = try? await self.load(quizID) else { return }
    self.publish(quizID: quizID, snapshot: snapshot)
  }

  /// Follows every replica's board changes (`LeaderboardRepository.channel`) until the
  /// notifier closes; after a `.reset` (notifications may have been missed) every watched
  /// board is reloaded.
  public func follow(_ changes: AsyncStream<ChangeNotification>) async {
    for await change in changes {
      switch change {
      case .reset:
        for quizID in self.quizzes.withLock({ Array($0.keys) }) { await self.changed(quizID: quizID) }
      case .payload(let text):
        let parts = text.split(separator: " ")
        guard parts.count == 2, let version = Int64(parts[1]) else { continue }
        await self.changed(quizID: String(parts[0]), version: version)
      }
    }
  }

  /// Hands `snapshot` to every watcher unless a newer one was handed out already.
  func publish(quizID: String, snapshot: Scoring_V1_LeaderboardSnapshot) {
    self.quizzes.withLock { quizzes in
      guard var watchers = quizzes[quizID] else { return }
      if let latest = watchers.latest, latest.version > snapshot.version { return }
      let fresh = watchers.latest?.version != snapshot.version || watchers.latest == nil
      watchers.latest = snapshot
      quizzes[quizID] = watchers
      for (_, continuation) in watchers.continuations where fresh { continuation.yield(snapshot) }
    }
  }

  /// How many watchers `quizID` has (tests, metrics).
  func watcherCount(quizID: String) -> Int { self.quizzes.withLock { $0[quizID]?.continuations.count ?? 0 } }
}
