import QuizwireProtos

/// One broken rule: `field` relative to the message checked (`choices[1].text`).
public struct QuizViolation: Sendable, Hashable {
  public var field: String
  public var description: String
  public init(_ field: String, _ description: String) {
    self.field = field
    self.description = description
  }
}

/// The content rules of quizzes and questions: limits, text, per-kind question rules and the
/// state machine. Pure; the validation conformances and handlers apply them.
public enum QuizRules {
  public static let maxTitle = 200
  public static let maxDescription = 5000
  public static let maxTags = 20
  public static let maxTag = 50
  public static let maxQuestions = 200
  public static let maxChoices = 10
  public static let maxPrompt = 2000
  public static let maxChoiceText = 500
  public static let maxChoiceID = 64
  public static let maxAcceptedTexts = 20
  public static let maxAcceptedText = 200
  public static let maxPoints: Int32 = 1000
  public static let timeLimitRange: ClosedRange<Int32> = 5...3600
  /// Used when a quiz is created with `question_time_limit_seconds` 0.
  public static let defaultTimeLimit: Int32 = 30
  /// Used when a question is written with `points` 0.
  public static let defaultPoints: Int32 = 1

  // MARK: Text

  /// Control characters (NUL included) are refused in every text; multi-line texts
  /// (description, prompt) may hold line breaks and tabs.
  public static func hasControlCharacters(_ text: String, multiline: Bool = false) -> Bool {
    text.unicodeScalars.contains { scalar in
      guard scalar.properties.generalCategory == .control else { return false }
      return !(multiline && (scalar == "\n" || scalar == "\r" || scalar == "\t"))
    }
  }

  static func text(
    _ value: String, _ field: String, max: Int, required: Bool, multiline: Bool = false, into out: inout [QuizViolation]
  ) {
    if required && value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { out.append(.init(field, "is required")) }
    if value.count > max { out.append(.init(field, "must be at most \(max) characters")) }
    if hasControlCharacters(value, multiline: multiline) { out.append(.init(field, "must not contain control characters")) }
  }

  // MARK: Quiz fields

  public static func titleViolations(_ title: String) -> [QuizViolation] {
    var out: [QuizViolation] = []
    text(title, "title", max: maxTitle, required: true, into: &out)
    return out
  }

  public static func descriptionViolations(_ description: String) -> [QuizViolation] {
    var out: [QuizViolation] = []
    text(description, "description", max: maxDescription, required: false, multiline: true, into: &out)
    return out
  }

  public static func tagViolations(_ tags: [String]) -> [QuizViolation] {
    var out: [QuizViolation] = []
    if tags.count > maxTags { out.append(.init("tags", "at most \(maxTags) tags")) }
    for (i, tag) in tags.enumerated() where !isValidTag(tag) {
      out.append(.init("tags[\(i)]", "must be 1–\(maxTag) of a-z A-Z 0-9 . _ + # -"))
    }
    return out
  }

  public static func isValidTag(_ tag: String) -> Bool {
    (1...maxTag).contains(tag.utf8.count)
      && tag.utf8.allSatisfy { b in
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x2E || b == 0x5F || b == 0x2B
          || b == 0x23 || b == 0x2D
      }
  }

  /// Tags as stored: lowercase, unique, sorted (a filter `tag = "Swift"` finds "swift").
  public static func normalizedTags(_ tags: [String]) -> [String] {
    Array(Set(tags.map { $0.lowercased() })).sorted()
  }

  public static func timeLimitViolations(_ seconds: Int32) -> [QuizViolation] {
    seconds == 0 || timeLimitRange.contains(seconds)
      ? [] : [.init("question_time_limit_seconds", "must be \(timeLimitRange.lowerBound)–\(timeLimitRange.upperBound) (0 for the default)")]
  }

  // MARK: Questions

  /// The choices a TRUE_FALSE question gets when the client sends none.
  public static let trueFalseChoices: [Quiz_V1_Choice] = [
    .with {
      $0.id = "true"; $0.text = "True"
    },
    .with {
      $0.id = "false"; $0.text = "False"
    },
  ]

  /// Everything wrong with one question as the client sent it (ids are the server's, so an
  /// `id` is not checked here).
  public static func questionViolations(_ q: Quiz_V1_Question) -> [QuizViolation] {
    var out: [QuizViolation] = []
    text(q.prompt, "prompt", max: maxPrompt, required: true, multiline: true, into: &out)
    if !(0...maxPoints).contains(q.points) { out.append(.init("points", "must be 0–\(maxPoints) (0 for the default of 1)")) }
    if q.choices.count > maxChoices { out.append(.init("choices", "at most \(maxChoices) choices")) }
    var seen = Set<String>()
    for (i, choice) in q.choices.enumerated() {
      if choice.id.isEmpty {
        out.append(.init("choices[\(i)].id", "is required"))
      } else if choice.id.count > maxChoiceID || hasControlCharacters(choice.id) {
        out.append(.init("choices[\(i)].id", "must be at most \(maxChoiceID) characters, no control characters"))
      } else if !seen.insert(choice.id).inserted {
        out.append(.init("choices[\(i)].id", "must be unique within the question"))
      }
      text(choice.text, "choices[\(i)].text", max: maxChoiceText, required: true, into: &out)
    }
    let key = q.answerKey
    let choiceIDs = q.kind == .trueFalse && q.choices.isEmpty ? Set(trueFalseChoices.map(\.id)) : seen
    for (i, id) in key.correctChoiceIds.enumerated() where !choiceIDs.contains(id) {
      out.append(.init("answer_key.correct_choice_ids[\(i)]", "names no choice of this question"))
    }
    let correct = Set(key.correctChoiceIds)
    if correct.count != key.correctChoiceIds.count { out.append(.init("answer_key.correct_choice_ids", "must not repeat an id")) }
    if key.acceptedTexts.count > maxAcceptedTexts { out.append(.init("answer_key.accepted_texts", "at most \(maxAcceptedTexts)")) }
    for (i, accepted) in key.acceptedTexts.enumerated() {
      text(accepted, "answer_key.accepted_texts[\(i)]", max: maxAcceptedText, required: true, into: &out)
    }
    switch q.kind {
    case .singleChoice, .multipleChoice:
      if q.choices.count < 2 { out.append(.init("choices", "needs at least 2 choices")) }
      if q.kind == .singleChoice && correct.count != 1 {
        out.append(.init("answer_key.correct_choice_ids", "a single-choice question has exactly one correct choice"))
      }
      if q.kind == .multipleChoice && correct.isEmpty {
        out.append(.init("answer_key.correct_choice_ids", "a multiple-choice question has at least one correct choice"))
      }
      if !key.acceptedTexts.isEmpty { out.append(.init("answer_key.accepted_texts", "only for short-text questions")) }
    case .trueFalse:
      if !q.choices.isEmpty && q.choices.count != 2 { out.append(.init("choices", "a true/false question has two choices (or none)")) }
      if correct.count != 1 { out.append(.init("answer_key.correct_choice_ids", "a true/false question has exactly one correct choice")) }
      if !key.acceptedTexts.isEmpty { out.append(.init("answer_key.accepted_texts", "only for short-text questions")) }
    case .shortText:
      if !q.choices.isEmpty { out.append(.init("choices", "a short-text question has no choices")) }
      if !correct.isEmpty { out.append(.init("answer_key.correct_choice_ids", "a short-text question has no choices")) }
      if key.acceptedTexts.isEmpty { out.append(.init("answer_key.accepted_texts", "a short-text question needs at least one accepted text")) }
    default:
      out.append(.init("kind", "must be SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE or SHORT_TEXT"))
    }
    return out
  }

  /// The rules a partial question update can check on what it sends alone: lengths and
  /// control characters of its texts (the per-kind rules need the merged question).
  public static func questionTextViolations(_ q: Quiz_V1_Question) -> [QuizViolation] {
    var out: [QuizViolation] = []
    if !q.prompt.isEmpty { text(q.prompt, "prompt", max: maxPrompt, required: false, multiline: true, into: &out) }
    for (i, choice) in q.choices.enumerated() {
      text(choice.id, "choices[\(i)].id", max: maxChoiceID, required: false, into: &out)
      text(choice.text, "choices[\(i)].text", max: maxChoiceText, required: false, into: &out)
    }
    for (i, accepted) in q.answerKey.acceptedTexts.enumerated() {
      text(accepted, "answer_key.accepted_texts[\(i)]", max: maxAcceptedText, required: false, into: &out)
    }
    return out
  }

  /// A valid question as stored: the server's id, default points and TRUE_FALSE choices.
  public static func normalized(_ q: Quiz_V1_Question, id: String) -> Quiz_V1_Question {
    var q = q
    q.id = id
    if q.points == 0 { q.points = defaultPoints }
    if q.kind == .trueFalse && q.choices.isEmpty { q.choices = trueFalseChoices }
    q.answerKey = q.answerKey  // present (maybe empty) in storage: redaction clears it later
    return q
  }

  // MARK: States

  /// Why a quiz in `state` can't be published (nil: it can). A published quiz is published
  /// already (idempotent, handled by the caller).
  public static func publishProblem(_ quiz: QuizRecord) -> QuizError? {
    guard quiz.state == .draft else {
      return .failedPrecondition(type: "STATE", subject: "quizzes/\(quiz.id)", description: "only a draft can be published (it is \(quiz.state.rawValue))")
    }
    let questions = quiz.questions ?? []
    let valid = questions.filter { questionViolations($0).isEmpty }
    guard !valid.isEmpty, valid.count == questions.count else {
      return .failedPrecondition(
        type: "QUESTIONS", subject: "quizzes/\(quiz.id)",
        description: questions.isEmpty ? "a quiz needs at least one question to be published" : "every question must be valid to publish")
    }
    return nil
  }

  /// Questions change only on drafts: a published quiz goes back with UnpublishQuiz first.
  public static func questionsEditable(_ quiz: QuizRecord) throws(QuizError) {
    guard quiz.state == .draft else {
      throw .failedPrecondition(
        type: "STATE", subject: "quizzes/\(quiz.id)",
        description: "questions of a \(quiz.state.rawValue.lowercased()) quiz can't change; unpublish it first (UnpublishQuiz)")
    }
  }

  /// Title, description, tags and time limit change on drafts and published quizzes; an
  /// archived quiz is read-only until unpublished.
  public static func detailsEditable(_ quiz: QuizRecord) throws(QuizError) {
    guard quiz.state != .archived else {
      throw .failedPrecondition(type: "STATE", subject: "quizzes/\(quiz.id)", description: "an archived quiz can't change; unpublish it first")
    }
  }
}
