import GRPCCore
import QuizwireProtos
import ServiceKit
import Synchronization

/// Public display names for leaderboards (auth's BatchGetUsers): never emails.
public protocol NameDirectory: Sendable {
  /// Names of the users among `ids` that are known; unknown ids are left out.
  func names(ids: [String]) async -> [String: String]
  /// A user was renamed (auth's `user.renamed`).
  func renamed(userID: String, to name: String)
  /// Forget every cached name (the rename feed reconnected: renames may have been missed).
  func forgetAll()
}

/// BatchGetUsers with this service's client-credentials token, names cached in memory (a
/// rename event replaces the cached name).
public final class RemoteNameDirectory<Transport: ClientTransport>: NameDirectory {
  let client: Auth_V1_AuthService.Client<Transport>
  let credentials: ClientCredentialsToken
  private let cache = Mutex<[String: String]>([:])

  public init(client: GRPCClient<Transport>, credentials: ClientCredentialsToken) {
    self.client = Auth_V1_AuthService.Client(wrapping: client)
    self.credentials = credentials
  }

  /// Names kept at most; past it the cache starts over (names are cheap to fetch again,
  /// and a board shows at most a page of them).
  static var maxCached: Int { 100_000 }

  public func names(ids: [String]) async -> [String: String] {
    // One lookup per id: every leaderboard page and snapshot asks, the cache may be large.
    var found = self.cache.withLock { cache in
      var hits: [String: String] = [:]
      for id in ids { if let name = cache[id] { hits[id] = name } }
      return hits
    }
    let missing = Array(Set(ids).subtracting(found.keys)).sorted()
    guard !missing.isEmpty else { return found }
    // Best effort: a leaderboard without names beats no leaderboard while auth is away.
    guard let token = try? await self.credentials.token(),
      let answer = try? await self.client.batchGetUsers(.with { $0.ids = missing }, metadata: ["authorization": "Bearer \(token)"])
    else { return found }
    self.cache.withLock { cache in
      if cache.count + answer.users.count > Self.maxCached { cache.removeAll(keepingCapacity: true) }
      for user in answer.users { cache[user.id] = user.displayName }
    }
    for user in answer.users { found[user.id] = user.displayName }
    return found
  }

  /// Only names already cached are replaced: a rename of someone no board showed yet is
  /// fetched when a board first needs it.
  public func renamed(userID: String, to name: String) { self.cache.withLock { if $0[userID] != nil { $0[userID] = name } } }
  public func forgetAll() { self.cache.withLock { $0.removeAll() } }
}

/// Fixed names (tests).
public struct StaticNameDirectory: NameDirectory {
  public var known: [String: String]
  public init(_ known: [String: String] = [:]) { self.known = known }
  public func names(ids: [String]) async -> [String: String] { self.known.filter { ids.contains($0.key) } }
  public func renamed(userID: String, to name: String) {}
  public func forgetAll() {}
}
