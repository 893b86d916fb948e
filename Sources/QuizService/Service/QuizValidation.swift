import QuizwireProtos
import ServiceKit

// Input rules of quiz.v1.QuizService, declared per request message and run by the validation
// interceptor before a handler reads the message (the rules themselves are `QuizRules`).
// Field paths are full (AIP-193): `quiz.questions[3].choices[1].text`. ImportQuestions is not
// validated here on purpose: its invalid questions are reported per item in the response.

extension FieldViolations {
  /// Adds `QuizRules` violations, relative to the current scope.
  mutating func add(_ violations: [QuizViolation]) {
    for v in violations { self.add(v.field, v.description) }
  }

  /// The quiz fields named by `fields` (all when nil), as a create or update sends them.
  mutating func quiz(_ quiz: Quiz_V1_Quiz, fields: Set<String>?) {
    let all = fields == nil
    if all || fields!.contains("title") { self.add(QuizRules.titleViolations(quiz.title)) }
    if all || fields!.contains("description") { self.add(QuizRules.descriptionViolations(quiz.description_p)) }
    if all || fields!.contains("tags") { self.add(QuizRules.tagViolations(quiz.tags)) }
    if all || fields!.contains("question_time_limit_seconds") { self.add(QuizRules.timeLimitViolations(quiz.questionTimeLimitSeconds)) }
    if all || fields!.contains("questions") {
      self.require(
        quiz.questions.count <= QuizRules.maxQuestions, "questions",
        "at most \(QuizRules.maxQuestions) questions (limit \(QuizRules.maxQuestions))")
      self.each("questions", quiz.questions.prefix(QuizRules.maxQuestions)) { scope, question in
        scope.add(QuizRules.questionViolations(question))
      }
    }
  }
}

extension Quiz_V1_CreateQuizRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(self.hasQuiz, "quiz", "is required")
    violations.at("quiz") { $0.quiz(self.quiz, fields: nil) }
  }
}

extension Quiz_V1_UpdateQuizRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quiz.id.isEmpty, "quiz.id", "is required")
    let unknown = Set(self.updateMask.paths).subtracting(QuizService.updatableFields)
    violations.require(
      unknown.isEmpty, "update_mask",
      "cannot update \(unknown.sorted().joined(separator: ", ")); updatable: \(QuizService.updatableFields.sorted().joined(separator: ", "))")
    violations.at("quiz") { $0.quiz(self.quiz, fields: self.updateMask.paths.isEmpty ? nil : Set(self.updateMask.paths)) }
  }
}

extension Quiz_V1_AddQuestionRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quizID.isEmpty, "quiz_id", "is required")
    violations.require(self.hasQuestion, "question", "is required")
    violations.at("question") { $0.add(QuizRules.questionViolations(self.question)) }
  }
}

extension Quiz_V1_UpdateQuestionRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quizID.isEmpty, "quiz_id", "is required")
    violations.require(!self.question.id.isEmpty, "question.id", "is required")
    let unknown = Set(self.updateMask.paths).subtracting(QuizService.questionFields)
    violations.require(
      unknown.isEmpty, "update_mask",
      "cannot update \(unknown.sorted().joined(separator: ", ")); updatable: \(QuizService.questionFields.sorted().joined(separator: ", "))")
    // The merged question is checked whole by the handler (a partial update is only valid
    // together with what is stored); text rules apply to what is sent already.
    violations.at("question") { $0.add(QuizRules.questionTextViolations(self.question)) }
  }
}

extension Quiz_V1_BatchGetQuizzesRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.ids.isEmpty, "ids", "is required")
    violations.require(self.ids.count <= QuizService.maxBatchIDs, "ids", "at most \(QuizService.maxBatchIDs) ids")
  }
}

extension Quiz_V1_ReorderQuestionsRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quizID.isEmpty, "quiz_id", "is required")
    violations.require(self.questionIds.count <= QuizRules.maxQuestions, "question_ids", "at most \(QuizRules.maxQuestions)")
  }
}
