import Foundation
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The process's descriptor limit. A server holds one descriptor per connection, and the usual
/// soft default (1024) is far below what the hard limit allows, so the first host to start
/// raises the soft limit to the hard one, once per process, and logs both.
enum DescriptorLimit {
  struct Change: Sendable {
    var softBefore: Int
    var soft: Int
    var hard: Int
    /// errno of a failed setrlimit.
    var failure: Int32?
  }

  /// Raised on first use (a `static let` runs once, thread-safely).
  static let change: Change = raise()
  private static let logged = NIOLockedValueBox(false)

  /// Raises the limit if no host has yet, and logs the result the first time.
  static func raiseOnce(logger: Logger) {
    let change = Self.change
    let first = Self.logged.withLockedValue { logged -> Bool in
      defer { logged = true }
      return !logged
    }
    guard first else { return }
    let metadata: Logger.Metadata = [
      "soft_before": .stringConvertible(change.softBefore), "soft": .stringConvertible(change.soft),
      "hard": .stringConvertible(change.hard),
    ]
    if let failure = change.failure {
      logger.warning(
        "descriptor limit", metadata: metadata.merging(["error": .string(String(cString: strerror(failure)))]) { a, _ in a })
    } else {
      logger.info("descriptor limit", metadata: metadata)
    }
  }

  private static func raise() -> Change {
    var limit = rlimit()
    guard getrlimit(resource, &limit) == 0 else {
      return Change(softBefore: -1, soft: -1, hard: -1, failure: errno)
    }
    let before = limit.rlim_cur
    // An unlimited hard limit is not a valid soft one: the kernel's own ceiling is.
    let target = limit.rlim_max == rlim_t.max ? Self.ceiling : limit.rlim_max
    var failure: Int32?
    if before < target {
      limit.rlim_cur = target
      if setrlimit(resource, &limit) != 0 { failure = errno }
      _ = getrlimit(resource, &limit)
    }
    return Change(
      softBefore: Int(clamping: before), soft: Int(clamping: limit.rlim_cur), hard: Int(clamping: limit.rlim_max), failure: failure)
  }

  #if canImport(Glibc)
    private static var resource: Int32 { Int32(RLIMIT_NOFILE.rawValue) }
    /// fs.nr_open, the most a process may have open.
    private static var ceiling: rlim_t {
      let text = try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8)
      return text.flatMap { rlim_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1_048_576
    }
  #else
    private static var resource: Int32 { RLIMIT_NOFILE }
    private static var ceiling: rlim_t { rlim_t(OPEN_MAX) }
  #endif
}
