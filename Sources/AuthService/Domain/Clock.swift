import Foundation

/// The wall clock the auth service reads (token times, expiries, lockouts); tests inject
/// their own. Durations between instants use `ContinuousClock` instead.
package typealias WallClock = @Sendable () -> Date

extension Date {
  /// Epoch milliseconds: the unit every stored time is in (BIGINT on both databases).
  var epochMs: Int64 { Int64((self.timeIntervalSince1970 * 1000).rounded(.down)) }
}
