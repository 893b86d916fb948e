import Foundation
import QuizwireProtos

/// The terminal side of one game of `quizwire play`: what to print for each `PlayEvent`, and
/// how a line of input becomes an answer. Lines that come before their question (a pipe
/// delivers them all at once) wait in a queue; a line that isn't a valid answer is explained
/// and the next one is read.
struct PlaySession {
  enum Input: Sendable {
    case event(Scoring_V1_PlayEvent)
    /// The server ended the stream (with its error, if any) before `finished`.
    case ended((any Error)?)
    case line(String)
    case endOfInput
  }

  /// Ends the game with a message for standard error.
  struct Stop: Error {
    var message: String
  }

  let send: (Scoring_V1_PlayRequest) -> Void
  /// The question waiting for an answer.
  private var current: Scoring_V1_QuestionEvent?
  private var lines: [String] = []
  private var inputEnded = false
  /// When input is not a terminal, the answers read are echoed after the prompt so the
  /// transcript reads like a game.
  private let echo = isatty(STDIN_FILENO) == 0

  init(send: @escaping (Scoring_V1_PlayRequest) -> Void) { self.send = send }

  /// Handles one input; true once the game is over.
  mutating func handle(_ input: Input) throws -> Bool {
    switch input {
    case .event(let event):
      return try self.show(event)
    case .ended(let error):
      if let error { throw error }
      throw Stop(message: "the scoring service ended the game before it finished")
    case .line(let line):
      self.lines.append(line)
    case .endOfInput:
      self.inputEnded = true
    }
    try self.answerFromInput()
    return false
  }

  private mutating func show(_ event: Scoring_V1_PlayEvent) throws -> Bool {
    switch event.kind {
    case .question(let q):
      let seconds = max(0, Int((Double(q.deadlineTime.seconds) + Double(q.deadlineTime.nanos) / 1e9 - Date().timeIntervalSince1970).rounded()))
      let points = q.question.points == 1 ? "1 point" : "\(q.question.points) points"
      print("\nQuestion \(q.index + 1) of \(q.questionCount) (\(points), \(seconds) s)")
      print(q.question.prompt)
      for (i, choice) in q.question.choices.enumerated() { print("  \(i + 1). \(choice.text)") }
      self.current = q
      self.prompt()
      try self.answerFromInput()
    case .feedback(let f):
      let verdict = f.late ? "too late" : f.correct ? "correct, +\(f.points)" : "wrong"
      print("\(verdict) — score \(f.runningScore)")
    case .finished(let f):
      print("\nFinal score: \(f.attempt.score) / \(f.attempt.maxScore)")
      return true
    case .rejected(let r):
      print("not taken: \(r.message)")
    case .none:
      break
    }
    fflush(nil)
    return false
  }

  private func prompt() {
    guard let q = self.current else { return }
    let hint: String
    switch q.question.kind {
    case .shortText: hint = "type your answer"
    case .multipleChoice: hint = "numbers 1–\(q.question.choices.count), e.g. 1,3"
    default: hint = "a number 1–\(q.question.choices.count)"
    }
    print("Your answer (\(hint))> ", terminator: "")
    fflush(nil)
  }

  /// Answers the current question from the queued lines; fails once input has ended with the
  /// question still open.
  private mutating func answerFromInput() throws {
    guard let q = self.current else { return }
    while !self.lines.isEmpty {
      let line = self.lines.removeFirst()
      if self.echo { print(line) }
      switch Self.parse(line, q.question) {
      case .success(let answer):
        self.current = nil
        self.send(.with { $0.answer = answer })
        return
      case .failure(let problem):
        print(problem.message)
        self.prompt()
      }
    }
    if self.inputEnded {
      print("")  // ends the prompt's line
      throw Stop(message: "standard input ended before question \(q.index + 1) of \(q.questionCount) was answered")
    }
  }

  /// A line as an answer to `question`: choice numbers (or a choice's text), or the text itself.
  static func parse(_ line: String, _ question: Quiz_V1_Question) -> Result<Scoring_V1_PlayAnswer, Stop> {
    let text = line.trimmingCharacters(in: .whitespaces)
    guard !text.isEmpty else { return .failure(Stop(message: "empty answer; try again")) }
    var answer = Scoring_V1_PlayAnswer()
    answer.questionID = question.id
    if question.kind == .shortText {
      answer.text = text
      return .success(answer)
    }
    let choices = question.choices
    if let named = choices.first(where: { $0.text.caseInsensitiveCompare(text) == .orderedSame }) {
      answer.choiceIds = [named.id]
      return .success(answer)
    }
    let parts = text.split(whereSeparator: { $0 == "," || $0 == " " })
    var ids: [String] = []
    for part in parts {
      guard let n = Int(part), (1...choices.count).contains(n) else {
        return .failure(Stop(message: "\"\(part)\" is not a choice: answer with a number 1–\(choices.count)"))
      }
      let id = choices[n - 1].id
      if !ids.contains(id) { ids.append(id) }
    }
    if question.kind != .multipleChoice, ids.count != 1 {
      return .failure(Stop(message: "pick exactly one choice (1–\(choices.count))"))
    }
    answer.choiceIds = ids
    return .success(answer)
  }
}
