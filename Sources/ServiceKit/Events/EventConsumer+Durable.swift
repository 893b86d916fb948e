import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import Storage

extension EventConsumer {
  func runDurable(_ handler: Durable) async throws {
    let lease = ConsumerLease(
      name: "consumer.\(handler.group)", database: handler.database, logger: self.logger, timing: self.config.lease)
    try await self.reconnecting {
      try await lease.whileHeld {
        self.stats.withLock { $0.holdsLease = true }
        defer { self.stats.withLock { $0.holdsLease = false } }
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask { try await self.replayRequested(handler) }
          group.addTask { try await self.consume(handler) }
          defer { group.cancelAll() }
          try await group.next()
        }
      }
    }
  }

  /// One subscription from the stored offset; after OUT_OF_RANGE, a resync from the head.
  private func consume(_ handler: Durable) async throws {
    let stored = try await handler.database.read { try await ConsumerStore.offset(group: handler.group, in: $0) }
    var request = Events_V1_SubscribeRequest()
    request.topic = self.feed.topic
    request.consumerGroup = handler.group
    request.afterOffset = stored ?? 0
    do {
      try await self.feed.subscribe(request) { messages in
        try await self.apply(messages, from: stored, handler)
      }
    } catch let error as RPCError where error.code == .outOfRange {
      self.logger.warning(
        "event feed cannot resume from the stored offset; resyncing from the producer's current state",
        metadata: ["offset": .stringConvertible(stored ?? 0), "error": .string(error.message)])
      request.fromHead = true
      try await self.feed.subscribe(request) { messages in
        var iterator = messages.makeAsyncIterator()
        guard let first = try await iterator.next() else { return }
        // Events after the head arrive on this stream while the resync runs: none is lost.
        try await handler.resync()
        try await handler.database.transaction { uow in
          try await ConsumerStore.advance(
            group: handler.group, feed: self.feed.feed, from: stored, to: first.headOffset, nowMs: Self.nowMs(), in: uow)
        }
        self.stats.withLock {
          $0.resyncs += 1
          $0.connections += 1
        }
        self.observe(head: first.headOffset, applied: first.headOffset, age: nil)
        try await self.apply(remaining: &iterator, from: first.headOffset, opened: true, handler)
      }
    }
    throw RPCError(code: .unavailable, message: "the producer ended the subscription")
  }

  private func apply(
    _ messages: RPCAsyncSequence<Events_V1_SubscribeResponse, any Error>, from stored: Int64?, _ handler: Durable
  ) async throws {
    var iterator = messages.makeAsyncIterator()
    try await self.apply(remaining: &iterator, from: stored, opened: false, handler)
  }

  /// `opened`: the subscription's first message was read already (and counted).
  private func apply(
    remaining iterator: inout RPCAsyncSequence<Events_V1_SubscribeResponse, any Error>.AsyncIterator, from stored: Int64?,
    opened: Bool, _ handler: Durable
  ) async throws {
    // A connection counts once the producer answered: a call to a producer that isn't up
    // fails on its first read (see `startupGrace`).
    var opened = opened
    var offset = stored
    var acknowledged = stored ?? 0
    var lastAcknowledgement = ContinuousClock.now
    while let message = try await iterator.next() {
      if !opened {
        opened = true
        self.stats.withLock { $0.connections += 1 }
      }
      for event in message.events.map(EventFeedService.envelope(from:)) where event.offset > (offset ?? 0) {
        let age = max(0, Double(Self.nowMs() - event.timeMs) / 1000)
        self.observe(head: message.headOffset, applied: nil, age: age)
        try await self.applyOne(event, expected: offset, handler)
        offset = event.offset
        self.observe(head: message.headOffset, applied: event.offset, age: age)
      }
      if message.events.isEmpty { self.observe(head: message.headOffset, applied: offset, age: nil) }
      if let current = offset, current > acknowledged, ContinuousClock.now - lastAcknowledgement >= self.config.acknowledgeInterval {
        var ack = Events_V1_AcknowledgeRequest()
        ack.topic = self.feed.topic
        ack.consumerGroup = handler.group
        ack.offset = current
        do {
          try await self.feed.acknowledge(ack)
          acknowledged = current
        } catch {
          self.logger.debug("acknowledgement failed; retried later", metadata: ["error": .string(Self.describe(error))])
        }
        lastAcknowledgement = ContinuousClock.now
      }
    }
  }

  /// Applies one event with its offset and key version, retrying with backoff; parks it when
  /// the retries are spent. A database that cannot be reached is not the event's fault: that
  /// error ends the subscription (resumed later from the stored offset) instead.
  private func applyOne(_ event: EventEnvelope, expected: Int64?, _ handler: Durable) async throws {
    var failures = 0
    while true {
      do {
        let applied = try await handler.database.transaction { uow -> Bool in
          try await ConsumerStore.advance(
            group: handler.group, feed: self.feed.feed, from: expected, to: event.offset, nowMs: Self.nowMs(), in: uow)
          guard try await ConsumerStore.claim(group: handler.group, key: event.key, version: event.keyVersion, offset: event.offset, in: uow) else {
            return false
          }
          try await handler.apply(event, uow)
          return true
        }
        self.stats.withLock { stats in
          if applied { stats.applied += 1 } else { stats.superseded += 1 }
        }
        return
      } catch let error as ConsumerStore.OffsetMoved {
        throw error
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        if Self.isOutage(error) { throw error }
        failures += 1
        switch self.config.retry.decision(afterFailure: failures) {
        case .retry(let delay):
          self.logger.warning(
            "event failed; retrying",
            metadata: [
              "offset": .stringConvertible(event.offset), "type": .string(event.type), "attempt": .stringConvertible(failures),
              "error": .string(Self.describe(error)),
            ])
          try await Task.sleep(for: delay)
        case .park:
          try await handler.database.transaction { uow in
            try await ConsumerStore.advance(
              group: handler.group, feed: self.feed.feed, from: expected, to: event.offset, nowMs: Self.nowMs(), in: uow)
            try await ConsumerStore.park(
              group: handler.group, feed: self.feed.feed, event: event, error: Self.describe(error), attempts: failures,
              nowMs: Self.nowMs(), in: uow)
          }
          self.stats.withLock { $0.parked += 1 }
          self.logger.error(
            "event parked as a dead letter after its retries (quizwire events dlq list)",
            metadata: [
              "offset": .stringConvertible(event.offset), "type": .string(event.type), "attempts": .stringConvertible(failures),
              "error": .string(Self.describe(error)),
            ])
          return
        }
      }
    }
  }

  /// Replays the dead letters an operator asked to retry, with the same version rule: a
  /// letter older than what was applied since is resolved without effect.
  private func replayRequested(_ handler: Durable) async throws {
    while true {
      let letters = try await handler.database.read { uow in
        try await ConsumerStore.deadLetters(group: handler.group, state: .retry, limit: 50, in: uow)
      }
      for letter in letters {
        do {
          try await handler.database.transaction { uow in
            if try await ConsumerStore.claim(
              group: handler.group, key: letter.event.key, version: letter.event.keyVersion, offset: letter.event.offset, in: uow)
            {
              try await handler.apply(letter.event, uow)
            }
            try await ConsumerStore.finishRetry(id: letter.id, error: nil, nowMs: Self.nowMs(), in: uow)
          }
          self.stats.withLock { $0.replayed += 1 }
          self.logger.notice("dead letter replayed", metadata: ["dead_letter": .string(letter.id)])
        } catch is CancellationError {
          throw CancellationError()
        } catch {
          if Self.isOutage(error) { throw error }
          try await handler.database.transaction { uow in
            try await ConsumerStore.finishRetry(id: letter.id, error: Self.describe(error), nowMs: Self.nowMs(), in: uow)
          }
          self.logger.error(
            "dead letter replay failed; parked again", metadata: ["dead_letter": .string(letter.id), "error": .string(Self.describe(error))])
        }
      }
      try await Task.sleep(for: self.config.replayInterval)
    }
  }

  /// The consumer's own database is down or overloaded: not a reason to park events.
  static func isOutage(_ error: any Error) -> Bool {
    switch Database.mapError(error) {
    case StorageError.unavailable, StorageError.busy: true
    default: false
    }
  }
}
