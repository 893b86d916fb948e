import ServiceLifecycle
import Storage

/// Runs a `ChangeNotifier` beside a host (`ModuleParts.lifecycle`), with the tasks that
/// consume its subscriptions (`followers`, e.g. a cache applying invalidations): the
/// LISTEN connection is kept while the host serves; after the drain the notifier closes,
/// which ends every subscription and so every follower.
public struct ChangeNotifierLifecycle: Service {
  public let notifier: ChangeNotifier
  private let followers: [@Sendable () async -> Void]

  public init(notifier: ChangeNotifier, followers: [@Sendable () async -> Void] = []) {
    self.notifier = notifier
    self.followers = followers
  }

  public func run() async throws {
    await withTaskGroup(of: Void.self) { group in
      for follower in self.followers { group.addTask { await follower() } }
      // Graceful shutdown cancels the LISTEN loop; `run` then closes the notifier, which
      // finishes the followers' streams.
      await cancelWhenGracefulShutdown { await self.notifier.run() }
      self.notifier.close()
      await group.waitForAll()
    }
  }
}
