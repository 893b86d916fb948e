import NIOCore

/// Runs Swift tasks on a NIO event loop, so a call's handler shares the thread of its
/// connection: waking the handler for a message and handing its reply to the socket then cost
/// no cross-thread wake-ups. Only for handlers that never block (the loop serves every
/// connection on it); see `FramedServerTransport.Config.runHandlersOnEventLoop`.
final class EventLoopTaskExecutor: TaskExecutor {
  let eventLoop: any EventLoop

  init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    self.eventLoop.execute {
      job.runSynchronously(on: self.asUnownedTaskExecutor())
    }
  }
}
