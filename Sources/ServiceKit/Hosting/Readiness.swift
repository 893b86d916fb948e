import NIOConcurrencyHelpers

/// Something a service needs to do its work (its database, the auth JWKS…). `check` throws
/// with a short reason when the dependency is not usable.
public struct DependencyCheck: Sendable {
  public var name: String
  public var check: @Sendable () async throws -> Void

  public init(name: String, check: @escaping @Sendable () async throws -> Void) {
    self.name = name
    self.check = check
  }
}

/// Whether a host should get traffic: all dependencies pass and it is not draining. Fed by a
/// periodic check loop; read by `/readyz` and the health service.
public final class Readiness: Sendable {
  public struct Snapshot: Sendable, Hashable {
    public var draining: Bool
    /// Failing dependencies and why; empty when all pass.
    public var failing: [String: String]
    /// False until every dependency has been checked once.
    public var checked: Bool
    public var isReady: Bool { !self.draining && self.failing.isEmpty && self.checked }
  }

  private let state = NIOLockedValueBox(Snapshot(draining: false, failing: [:], checked: false))
  private let onChange: @Sendable (Bool) -> Void

  /// - Parameter onChange: called with the new readiness whenever it flips.
  public init(onChange: @escaping @Sendable (Bool) -> Void = { _ in }) { self.onChange = onChange }

  public var snapshot: Snapshot { self.state.withLockedValue { $0 } }
  public var isReady: Bool { self.snapshot.isReady }

  /// Records one round of dependency results.
  public func update(failing: [String: String]) {
    self.apply {
      $0.failing = failing; $0.checked = true
    }
  }

  /// Readiness goes false for good: the host is draining.
  public func beginDraining() {
    self.apply { $0.draining = true }
  }

  private func apply(_ change: (inout Snapshot) -> Void) {
    let (before, after) = self.state.withLockedValue { s -> (Bool, Bool) in
      let before = s.isReady
      change(&s)
      return (before, s.isReady)
    }
    if before != after { self.onChange(after) }
  }

  /// Runs every check, each bounded by `timeout`; returns the failing ones with reasons.
  public static func run(_ checks: [DependencyCheck], timeout: Duration) async -> [String: String] {
    await withTaskGroup(of: (String, String?).self) { group in
      for dependency in checks {
        group.addTask {
          do {
            try await withThrowingTaskGroup(of: Void.self) { inner in
              inner.addTask { try await dependency.check() }
              inner.addTask {
                try await Task.sleep(for: timeout)
                throw DependencyTimeout()
              }
              defer { inner.cancelAll() }
              try await inner.next()
            }
            return (dependency.name, nil)
          } catch is DependencyTimeout {
            return (dependency.name, "no answer within \(timeout)")
          } catch {
            return (dependency.name, "\(error)")
          }
        }
      }
      var failing: [String: String] = [:]
      for await (name, reason) in group {
        if let reason { failing[name] = reason }
      }
      return failing
    }
  }
}

private struct DependencyTimeout: Error {}
