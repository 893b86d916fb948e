import Foundation
import GRPCCore
import QuizwireProtos
import ServiceKit
import Storage
import SwiftProtobuf

extension ScoringService {
  // MARK: Appending

  /// Loads attempt `id`, lets `decide` choose the events to append to its current fold, and
  /// appends them with the projections in one unit of work. A concurrent append to the same
  /// attempt loses on the (attempt_id, seq) key and is retried on the fresh fold, so nothing
  /// is counted twice. Tells the leaderboard hub after the commit when the board changed.
  func update(
    _ id: String, _ decide: @escaping @Sendable (AttemptState) -> [AttemptEvent]
  ) async throws -> (before: AttemptState, after: AttemptState) {
    for _ in 0..<5 {
      do {
        let (before, after, version) = try await self.db.transaction { uow in
          guard let state = try await self.attempts.find(id: id, in: uow) else {
            throw RPCError(code: .notFound, message: "attempt \(id) not found")
          }
          let (next, version) = try await self.attempts.append(decide(state), to: state, in: uow)
          return (state, next, version)
        }
        self.counters?.record(before: before, after: after)
        if let version, let result = after.result {
          await self.hub.finished(quizID: after.started.quizID, result: result, version: version)
        }
        return (before, after)
      } catch StorageError.uniqueViolation {
        continue
      }
    }
    throw RPCError(code: .aborted, message: "attempt \(id) is being changed concurrently; retry")
  }

  /// Records an answer for `questionID` now: questions whose deadline passed are timed out
  /// first unless `questionID` is the current one (a late answer to the current question is
  /// recorded and scores 0); the attempt finishes after its last question. `recorded` is
  /// false when `questionID` was not current (the caller decides what that means).
  func answer(_ id: String, questionID: String, choiceIDs: [String], text: String) async throws -> (
    before: AttemptState, after: AttemptState, recorded: Bool
  ) {
    let now = self.now()
    let (before, after) = try await self.update(id) { state in
      var s = state
      var events: [AttemptEvent] = []
      func add(_ new: [AttemptEvent]) {
        for e in new { s.apply(e) }
        events += new
      }
      if s.currentQuestion?.id != questionID { add(s.catchUp(nowMs: now)) }
      if s.currentQuestion?.id == questionID {
        add([.answerRecorded(.init(questionID: questionID, choiceIDs: choiceIDs, text: text, atMs: now))])
        add(s.catchUp(nowMs: now))
      }
      return events
    }
    // Time-outs are recorded at their deadline (before now): an answer at `now` is this one.
    let recorded =
      !before.answers.contains { $0.questionID == questionID } && after.answers.contains { $0.questionID == questionID && $0.atMs == now }
    return (before, after, recorded)
  }

  /// Times out what is due now (and finishes an attempt with nothing left).
  func catchUp(_ id: String) async throws -> (before: AttemptState, after: AttemptState) {
    let now = self.now()
    return try await self.update(id) { $0.catchUp(nowMs: now) }
  }

  // MARK: SubmitAnswers

  public func submitAnswers(
    request: RPCAsyncSequence<Scoring_V1_SubmitAnswersRequest, any Error>, context: ServerContext
  ) async throws -> Scoring_V1_Attempt {
    var attemptID: String?
    for try await message in request {
      if attemptID == nil {
        let state = try await self.loadOwn(message.attemptID)
        attemptID = state.id
      }
      guard let id = attemptID, message.attemptID == id else {
        throw RPCError(code: .invalidArgument, message: "every message must name the same attempt_id")
      }
      let state = try await self.loadOwn(id)
      guard let index = state.started.questions.firstIndex(where: { $0.id == message.questionID }) else {
        throw RPCError(code: .invalidArgument, message: "question \(message.questionID) is not in this attempt")
      }
      // A retried stream repeats answers already recorded: the first answer stays.
      if index < state.currentIndex || state.isFinished { continue }
      let result = try await self.answer(id, questionID: message.questionID, choiceIDs: message.choiceIds, text: message.text)
      if !result.recorded, result.after.answers.firstIndex(where: { $0.questionID == message.questionID }) == nil {
        throw RPCError(code: .failedPrecondition, message: "question \(message.questionID) is not the current question")
      }
    }
    guard let id = attemptID else { throw RPCError(code: .invalidArgument, message: "no answers sent") }
    let now = self.now()
    let (_, after) = try await self.update(id) { state in
      var s = state
      var events = s.catchUp(nowMs: now)
      for e in events { s.apply(e) }
      if !s.isFinished { events.append(.finished(.init(atMs: now))) }
      return events
    }
    return Self.message(after)
  }

  /// The caller's own attempt (NOT_FOUND for anyone else's).
  func loadOwn(_ id: String) async throws -> AttemptState {
    let viewer = Self.viewer()
    guard let state = try await self.db.read({ uow in try await self.attempts.find(id: id, in: uow) }), viewer.userID == state.started.userID
    else { throw RPCError(code: .notFound, message: "attempt \(id) not found") }
    return state
  }

  // MARK: Play

  enum PlayInput: Sendable {
    case message(Scoring_V1_PlayRequest)
    case deadline(attempt: String, index: Int)
    case end
  }

  public func play(
    request: RPCAsyncSequence<Scoring_V1_PlayRequest, any Error>, response: RPCWriter<Scoring_V1_PlayEvent>, context: ServerContext
  ) async throws {
    // Requests and deadline timers meet in `inputs`. The reader hands over one request at a
    // time and reads the next only once the loop below took the last one, so `inputs` holds
    // at most one request: the ones the handler has not reached stay in the transport, whose
    // flow control stalls a client that answers faster than they are scored.
    let (inputs, sink) = AsyncStream.makeStream(of: PlayInput.self)
    let (taken, takenSink) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    let reader = Task {
      var handedOver = taken.makeAsyncIterator()
      do {
        for try await message in request {
          sink.yield(.message(message))
          guard await handedOver.next() != nil else { return }
        }
      } catch {}
      sink.yield(.end)
    }
    var timer: Task<Void, Never>?
    defer {
      reader.cancel()
      timer?.cancel()
      sink.finish()
      takenSink.finish()
    }
    var attemptID: String?
    var shownIndex = -1
    let clock = self.now

    /// Sends feedback for what `after` recorded beyond `before`, then the next question or
    /// `finished`; arms the deadline timer. Returns true once finished.
    func advance(from before: AttemptState?, to after: AttemptState) async throws -> Bool {
      if let before {
        var running = before.score
        for answer in after.answers.dropFirst(before.answers.count) {
          running += answer.points
          try await response.write(
            .with {
              $0.feedback = .with {
                $0.questionID = answer.questionID
                $0.correct = answer.correct
                $0.points = answer.points
                $0.runningScore = running
                $0.late = answer.late
              }
            })
        }
      }
      if after.isFinished {
        try await response.write(.with { $0.finished = .with { $0.attempt = Self.message(after) } })
        return true
      }
      guard let deadline = after.currentDeadlineMs else { return false }
      if after.currentIndex != shownIndex {
        shownIndex = after.currentIndex
        try await response.write(.with { $0.question = Self.questionEvent(after) })
        timer?.cancel()
        let id = after.id
        let index = after.currentIndex
        timer = Task {
          let wait = max(deadline - clock(), 0) + 5
          try? await Task.sleep(for: .milliseconds(wait))
          if !Task.isCancelled { sink.yield(.deadline(attempt: id, index: index)) }
        }
      }
      return false
    }

    for await input in inputs {
      switch input {
      case .end:
        return
      case .deadline(let id, let index):
        guard id == attemptID, index == shownIndex else { continue }
        let (before, after) = try await self.catchUp(id)
        if try await advance(from: before, to: after) { return }
      case .message(let message):
        takenSink.yield()  // the reader may fetch the next request while this one is handled
        guard let id = attemptID else {
          let state: AttemptState
          switch message.kind {
          case .start(let start): state = try await self.start(quizID: start.quizID, idempotencyKey: start.idempotencyKey)
          case .resume(let resume): state = try await self.loadOwn(resume.attemptID)
          default: throw RPCError(code: .invalidArgument, message: "the first message must be start or resume")
          }
          attemptID = state.id
          let (before, after) = try await self.catchUp(state.id)
          if try await advance(from: before, to: after) { return }
          continue
        }
        guard case .answer(let answer) = message.kind else {
          throw RPCError(code: .invalidArgument, message: "after start or resume, only answers")
        }
        let result = try await self.answer(id, questionID: answer.questionID, choiceIDs: answer.choiceIds, text: answer.text)
        if !result.recorded {
          try await response.write(
            .with {
              $0.rejected = .with {
                $0.code = Int32(RPCError.Code.failedPrecondition.rawValue)
                $0.message = "question \(answer.questionID) is not the current question"
                $0.questionID = answer.questionID
              }
            })
        }
        if try await advance(from: result.before, to: result.after) { return }
      }
    }
  }

  static func questionEvent(_ state: AttemptState) -> Scoring_V1_QuestionEvent {
    var event = Scoring_V1_QuestionEvent()
    let index = state.currentIndex
    if index < state.started.shown.count, let question = try? Quiz_V1_Question(serializedBytes: state.started.shown[index]) {
      event.question = question
    } else {
      event.question = .with { $0.id = state.started.questions[index].id }
    }
    event.index = Int32(index)
    event.deadlineTime = Google_Protobuf_Timestamp(milliseconds: state.currentDeadlineMs ?? 0)
    event.attemptID = state.id
    event.questionCount = Int32(state.started.questions.count)
    return event
  }
}
