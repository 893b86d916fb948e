import Foundation
import QuizwireProtos
import ServiceKit
import Storage
import Synchronization

/// Leaderboards in memory, per replica: the write-through top of each board that was read
/// lately (`TopBoard`), and the fan-out of its snapshots to watchers.
///
/// - Write-through: after this replica commits a finish that moved a board, `finished` applies
///   the result to the board in memory, so `GetLeaderboard`'s first pages and every
///   `WatchLeaderboard` snapshot come from memory and never from the database.
/// - Other replicas' writes arrive as versions on `LeaderboardRepository.channel`
///   (`follow`): the board is marked stale at once and reloaded (one load per change, shared
///   by every reader and watcher). A read of a stale board loads it, so a page never goes
///   behind a version this replica has heard of; the window left is the notification's own
///   delivery (sent at the other replica's commit, before it answers its player).
/// - Fan-out: one shared snapshot per board and change; each watcher holds at most one
///   pending snapshot (the newest: its stream buffers newest-1), so a slow reader never holds
///   back the others or grows memory.
///
/// At most `maxBoards` boards are kept; the least recently read one without watchers goes.
public final class LeaderboardHub: ResponseCacheObservable {
  public static let maxTop = TopBoard.capacity
  public static let defaultMaxBoards = 1_000
  public let name = "scoring.leaderboard_top"

  struct Entry {
    var board: TopBoard?
    /// The highest version this replica has heard of; the board is stale while behind it.
    var announced: Int64 = -1
    var watchers: [Int: AsyncStream<Scoring_V1_LeaderboardSnapshot>.Continuation] = [:]
    var nextWatcher = 0
    /// The snapshot handed to watchers last.
    var latest: Scoring_V1_LeaderboardSnapshot?
    var lastUsed: UInt64 = 0
    /// The load in flight, shared by every miss meanwhile.
    var loading: Task<TopBoard, any Error>?

    var fresh: TopBoard? {
      guard let board, board.version >= self.announced else { return nil }
      return board
    }
  }

  struct State {
    var entries: [String: Entry] = [:]
    var tick: UInt64 = 0
    var stats = ResponseCacheStatistics()
  }

  private let state = Mutex(State())
  private let maxBoards: Int
  /// The board's top `TopBoard.capacity + 1` rows from the projection.
  let load: @Sendable (String) async throws -> TopBoard
  /// Display entries for rows starting at a rank offset (names from the auth service).
  let present: @Sendable ([LeaderboardResult], Int) async -> [Scoring_V1_LeaderboardEntry]

  public init(
    maxBoards: Int = LeaderboardHub.defaultMaxBoards, load: @escaping @Sendable (String) async throws -> TopBoard,
    present: @escaping @Sendable ([LeaderboardResult], Int) async -> [Scoring_V1_LeaderboardEntry]
  ) {
    self.maxBoards = max(1, maxBoards)
    self.load = load
    self.present = present
  }

  public var statistics: ResponseCacheStatistics {
    self.state.withLock { state in
      var stats = state.stats
      stats.entries = state.entries.values.count { $0.board != nil }
      return stats
    }
  }

  // MARK: Reads

  /// The quiz's board, current as far as this replica knows: from memory (a hit) or loaded.
  /// Concurrent misses share one load (a thousand watchers arriving cost one query).
  public func board(quizID: String) async throws -> TopBoard {
    enum Lookup {
      case hit(TopBoard)
      case load(Task<TopBoard, any Error>, owner: Bool)
    }
    let lookup = self.state.withLock { state -> Lookup in
      state.tick += 1
      var entry = state.entries[quizID] ?? Entry()
      if let board = entry.fresh {
        entry.lastUsed = state.tick
        state.entries[quizID] = entry
        state.stats.hits += 1
        return .hit(board)
      }
      state.stats.misses += 1
      if let running = entry.loading { return .load(running, owner: false) }
      let task = Task { try await self.load(quizID) }
      entry.loading = task
      state.entries[quizID] = entry
      return .load(task, owner: true)
    }
    switch lookup {
    case .hit(let board):
      return board
    case .load(let task, let owner):
      guard owner else { return try await task.value }
      do {
        return self.install(quizID: quizID, try await task.value)
      } catch {
        self.state.withLock { $0.entries[quizID]?.loading = nil }
        throw error
      }
    }
  }

  /// Keeps `loaded` unless the board in memory is newer already (a write applied while it
  /// loaded); returns what is kept.
  private func install(quizID: String, _ loaded: TopBoard) -> TopBoard {
    self.state.withLock { state in
      state.tick += 1
      var entry = state.entries[quizID] ?? Entry()
      entry.loading = nil
      if entry.board.map({ $0.version < loaded.version }) ?? true {
        entry.board = loaded
        state.stats.insertions += 1
      }
      entry.lastUsed = state.tick
      state.entries[quizID] = entry
      if state.entries.count > self.maxBoards { Self.evict(&state) }
      return entry.board ?? loaded
    }
  }

  private static func evict(_ state: inout State) {
    let idle = state.entries.filter { $0.value.watchers.isEmpty && $0.value.loading == nil }
    guard let oldest = idle.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key else { return }
    state.entries[oldest] = nil
    state.stats.evictions += 1
  }

  // MARK: Writes

  /// This replica committed `result`, which moved the quiz's board to `version`: applied in
  /// memory (write-through) and handed to the board's watchers.
  public func finished(quizID: String, result: LeaderboardResult, version: Int64) async {
    let watched = self.state.withLock { state -> Bool in
      guard var entry = state.entries[quizID] else { return false }
      if var board = entry.board, board.version < version {
        if board.apply(result, version: version) {
          entry.board = board
        } else {
          state.stats.invalidations += 1
        }
      }
      entry.announced = max(entry.announced, version)
      state.entries[quizID] = entry
      return !entry.watchers.isEmpty
    }
    if watched { await self.publish(quizID: quizID) }
  }

  /// The board of `quizID` changed to `version` somewhere (another replica's commit, a hidden
  /// board; `.max` when unknown): the board in memory is stale; its watchers get the reload.
  public func changed(quizID: String, version: Int64 = .max) async {
    let watched = self.state.withLock { state -> Bool in
      guard var entry = state.entries[quizID] else { return false }
      if (entry.board?.version ?? -1) < version {
        if version == .max { entry.board = nil } else { entry.announced = max(entry.announced, version) }
        state.stats.invalidations += 1
      }
      state.entries[quizID] = entry
      return !entry.watchers.isEmpty
    }
    if watched { await self.publish(quizID: quizID) }
  }

  /// Follows every replica's board changes (`LeaderboardRepository.channel`) until the
  /// notifier closes; after a `.reset` (notifications may have been missed) every board in
  /// memory is dropped and the watched ones reloaded.
  public func follow(_ changes: AsyncStream<ChangeNotification>) async {
    for await change in changes {
      switch change {
      case .reset:
        for quizID in self.state.withLock({ Array($0.entries.keys) }) { await self.changed(quizID: quizID) }
      case .payload(let text):
        let parts = text.split(separator: " ")
        guard parts.count == 2, let version = Int64(parts[1]) else { continue }
        await self.changed(quizID: String(parts[0]), version: version)
      }
    }
  }

  // MARK: Watchers

  /// A stream of the quiz's snapshots (top `maxTop`), starting with the current one.
  func watch(quizID: String) async throws -> (id: Int, stream: AsyncStream<Scoring_V1_LeaderboardSnapshot>) {
    let (stream, continuation) = AsyncStream.makeStream(of: Scoring_V1_LeaderboardSnapshot.self, bufferingPolicy: .bufferingNewest(1))
    let (id, latest) = self.state.withLock { state in
      var entry = state.entries[quizID] ?? Entry()
      let id = entry.nextWatcher
      entry.nextWatcher += 1
      entry.watchers[id] = continuation
      state.entries[quizID] = entry
      return (id, entry.latest.flatMap { $0.version == entry.fresh?.version ? $0 : nil })
    }
    if let latest {
      continuation.yield(latest)
    } else {
      do {
        // Watchers skip versions they have seen, so a snapshot handed out twice is harmless.
        continuation.yield(try await self.handOut(quizID: quizID))
      } catch {
        self.unwatch(quizID: quizID, id: id)
        throw error
      }
    }
    return (id, stream)
  }

  func unwatch(quizID: String, id: Int) {
    self.state.withLock { state in
      state.entries[quizID]?.watchers[id]?.finish()
      state.entries[quizID]?.watchers[id] = nil
      if let entry = state.entries[quizID], entry.watchers.isEmpty, entry.board == nil, entry.loading == nil { state.entries[quizID] = nil }
    }
  }

  /// Builds the current snapshot once and hands it to every watcher unless a newer one was
  /// handed out already.
  @discardableResult
  private func handOut(quizID: String) async throws -> Scoring_V1_LeaderboardSnapshot {
    let board = try await self.board(quizID: quizID)
    var snapshot = Scoring_V1_LeaderboardSnapshot()
    snapshot.quizID = quizID
    snapshot.version = board.version
    snapshot.entries = board.hidden ? [] : await self.present(board.results, 0)
    self.state.withLock { state in
      guard var entry = state.entries[quizID] else { return }
      if let latest = entry.latest, latest.version >= snapshot.version { return }
      entry.latest = snapshot
      state.entries[quizID] = entry
      for continuation in entry.watchers.values { continuation.yield(snapshot) }
    }
    return snapshot
  }

  private func publish(quizID: String) async {
    _ = try? await self.handOut(quizID: quizID)
  }

  /// How many watchers `quizID` has (tests, metrics).
  func watcherCount(quizID: String) -> Int { self.state.withLock { $0.entries[quizID]?.watchers.count ?? 0 } }
}
