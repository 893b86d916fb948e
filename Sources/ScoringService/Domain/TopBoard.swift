/// A quiz's top of the leaderboard as one replica holds it in memory (the write-through cache
/// in front of the `leaderboard` projection): the best `capacity` results in rank order at a
/// projection `version`.
///
/// Pure: the hub loads it from the projection and keeps it current by applying each finished
/// attempt that changed the board, in version order. A gap in versions (another replica's
/// write, a hidden board) cannot be applied from here, and the hub reloads instead.
public struct TopBoard: Sendable, Hashable {
  /// How many results are kept (`WatchLeaderboard`'s `top_n` maximum and the pages served
  /// from memory).
  public static let capacity = 100

  /// In rank order (`LeaderboardResult.ranksBefore`), at most `capacity`, one per user.
  public private(set) var results: [LeaderboardResult]
  public private(set) var version: Int64
  public private(set) var hidden: Bool
  /// True when the projection holds no result beyond `results` (so any page past the end is
  /// known to be empty).
  public private(set) var complete: Bool

  /// `rows`: the projection's first rows in rank order, up to `capacity + 1` (one more tells
  /// whether the board goes on).
  public init(rows: [LeaderboardResult], version: Int64, hidden: Bool) {
    self.results = Array(rows.prefix(Self.capacity))
    self.complete = rows.count <= Self.capacity
    self.version = version
    self.hidden = hidden
  }

  /// Applies `result`, the user's new best that moved the board to `version`. Returns false
  /// (and changes nothing) unless `version` directly follows this board's: the caller reloads.
  public mutating func apply(_ result: LeaderboardResult, version: Int64) -> Bool {
    guard version == self.version + 1, !self.hidden else { return false }
    // The projection only moves a user's row when the new result ranks before the old one,
    // so the user's old entry (if it is here) goes and the new one goes in at its rank.
    self.results.removeAll { $0.userID == result.userID }
    let rank = self.results.firstIndex { LeaderboardResult.ranksBefore(result, $0) } ?? self.results.count
    self.results.insert(result, at: rank)
    if self.results.count > Self.capacity {
      self.results.removeLast()
      self.complete = false
    }
    self.version = version
    return true
  }

  /// The page `[offset, offset + limit)` and whether more results follow, or nil when the
  /// answer needs rows this board doesn't hold.
  public func page(offset: Int, limit: Int) -> (rows: [LeaderboardResult], more: Bool)? {
    guard offset >= 0, limit > 0 else { return nil }
    let end = offset + limit
    if end < self.results.count { return (Array(self.results[offset..<end]), true) }
    guard self.complete else { return nil }
    return (offset < self.results.count ? Array(self.results[offset...]) : [], false)
  }
}
