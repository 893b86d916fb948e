import Dispatch
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// Gives memory back to the system after a connection that queued a lot closes.
///
/// glibc keeps freed memory in its arenas: after 50 slow readers left, the server's RSS stayed
/// ~75 MB above where it started although every buffer was freed. `malloc_trim(0)` returns
/// the free pages of every arena. It walks them all under their locks, so it runs off the event
/// loops, a moment after the close (the connection's buffers are freed as its tasks finish,
/// and a burst of closes is coalesced), and at most once per `minimumInterval`.
enum HeapTrim {
  /// Connections that never queued more than this leave too little behind to bother.
  static let threshold = 256 * 1024
  static let delay = TimeAmount.milliseconds(500)
  static let minimumInterval = TimeAmount.seconds(1)

  private struct State {
    var scheduled = false
    var last = NIODeadline.uptimeNanoseconds(0)
  }
  private static let state = NIOLockedValueBox(State())

  static func connectionClosed(peakQueuedBytes: Int) {
    guard peakQueuedBytes >= Self.threshold, let trim = Self.mallocTrim else { return }
    let now = NIODeadline.now()
    let at: NIODeadline? = Self.state.withLockedValue { s in
      guard !s.scheduled else { return nil }
      s.scheduled = true
      return max(now + Self.delay, s.last + Self.minimumInterval)
    }
    guard let at else { return }
    let wait = DispatchTimeInterval.nanoseconds(Int(max(0, (at - now).nanoseconds)))
    DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + wait) {
      _ = trim(0)
      Self.state.withLockedValue { s in
        s.scheduled = false
        s.last = .now()
      }
    }
  }

  /// glibc's `malloc_trim`, looked up at run time: Swift's Glibc module doesn't import
  /// <malloc.h>, and other C libraries (musl) don't have it.
  private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
    #if canImport(Glibc)
      guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
      return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    #else
      return nil
    #endif
  }()
}
