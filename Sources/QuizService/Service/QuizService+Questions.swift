import GRPCCore
import QuizwireProtos
import ServiceKit
import Storage

extension QuizService {
  /// Question fields UpdateQuestion may change; an empty update mask means all of them.
  static let questionFields: Set<String> = ["kind", "prompt", "choices", "points", "answer_key"]

  public func addQuestion(request: Quiz_V1_AddQuestionRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    try request.fieldViolations.check()
    let quiz = try await self.write(id: request.quizID, etag: request.etag, load: .everything) { quiz in
      try QuizRules.questionsEditable(quiz)
      var questions = quiz.questions ?? []
      guard questions.count < QuizRules.maxQuestions else {
        throw QuizError.limitExceeded(
          field: "quiz.questions", limit: QuizRules.maxQuestions, description: "a quiz has at most \(QuizRules.maxQuestions) questions")
      }
      let question = QuizRules.normalized(request.question, id: Self.newID("qq_"))
      if request.hasPosition {
        guard (0...questions.count).contains(Int(request.position)) else {
          throw QuizError.invalidArgument(field: "position", description: "must be 0–\(questions.count)")
        }
        questions.insert(question, at: Int(request.position))
      } else {
        questions.append(question)
      }
      quiz.questions = questions
      return WriteEffect(replaceQuestions: true)
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func updateQuestion(request: Quiz_V1_UpdateQuestionRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    try request.fieldViolations.check()
    let fields = request.updateMask.paths.isEmpty ? Self.questionFields : Set(request.updateMask.paths)
    let quiz = try await self.write(id: request.quizID, etag: request.etag, load: .everything) { quiz in
      try QuizRules.questionsEditable(quiz)
      var questions = quiz.questions ?? []
      guard let index = questions.firstIndex(where: { $0.id == request.question.id }) else {
        throw QuizError.invalidArgument(field: "question.id", description: "no question \(request.question.id) in this quiz")
      }
      var question = questions[index]
      let input = request.question
      if fields.contains("kind") { question.kind = input.kind }
      if fields.contains("prompt") { question.prompt = input.prompt }
      if fields.contains("choices") { question.choices = input.choices }
      if fields.contains("points") { question.points = input.points }
      if fields.contains("answer_key") { question.answerKey = input.answerKey }
      // A partial update may combine into an invalid question (a kind without its choices):
      // checked as a whole before it is stored.
      var violations = FieldViolations()
      violations.at("question") { scope in
        for v in QuizRules.questionViolations(question) { scope.add(v.field, v.description) }
      }
      try violations.check()
      questions[index] = QuizRules.normalized(question, id: question.id)
      quiz.questions = questions
      return WriteEffect(replaceQuestions: true)
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func removeQuestion(request: Quiz_V1_RemoveQuestionRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    let quiz = try await self.write(id: request.quizID, etag: request.etag, load: .everything) { quiz in
      try QuizRules.questionsEditable(quiz)
      var questions = quiz.questions ?? []
      guard let index = questions.firstIndex(where: { $0.id == request.questionID }) else {
        throw QuizError.invalidArgument(field: "question_id", description: "no question \(request.questionID) in this quiz")
      }
      questions.remove(at: index)
      quiz.questions = questions
      return WriteEffect(replaceQuestions: true)
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func reorderQuestions(request: Quiz_V1_ReorderQuestionsRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    let quiz = try await self.write(id: request.quizID, etag: request.etag, load: .everything) { quiz in
      try QuizRules.questionsEditable(quiz)
      let questions = quiz.questions ?? []
      let byID = Dictionary(questions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
      guard request.questionIds.count == questions.count, Set(request.questionIds) == Set(byID.keys) else {
        throw QuizError.invalidArgument(field: "question_ids", description: "must name every question of the quiz exactly once")
      }
      quiz.questions = request.questionIds.compactMap { byID[$0] }
      return WriteEffect(replaceQuestions: true)
    }
    return Self.message(quiz, answerKeys: true)
  }

  /// Buffers and validates the streamed questions (never more than the quiz has room for),
  /// then writes all of them in one short unit of work once the stream has ended: the writer
  /// is never held while the client streams. Any invalid question → nothing imported, each
  /// invalid one reported; past the limit → INVALID_ARGUMENT naming it.
  public func importQuestions(
    request: RPCAsyncSequence<Quiz_V1_ImportQuestionsRequest, any Error>, context: ServerContext
  ) async throws -> Quiz_V1_ImportQuestionsResponse {
    var target: Quiz_V1_ImportTarget?
    var room = 0
    var buffered: [Quiz_V1_Question] = []
    var errors: [Quiz_V1_ItemError] = []
    let viewer = Self.viewer()
    for try await message in request {
      switch message.item {
      case .target(let t):
        guard target == nil else { throw QuizError.invalidArgument(field: "target", description: "only the first message names the quiz") }
        target = t
        // A read, not the writer: find out how much room there is before buffering.
        let quiz = try await self.db.read { uow in try await self.quizzes.find(id: t.quizID, load: .row, in: uow) }
        guard let quiz else { throw QuizError.notFound(t.quizID) }
        try QuizAccess.checkWrite(quiz, by: viewer)
        try QuizRules.questionsEditable(quiz)
        room = QuizRules.maxQuestions - quiz.questionCount
      case .question(let question):
        guard target != nil else { throw QuizError.invalidArgument(field: "target", description: "the first message must name the quiz") }
        guard buffered.count < room else {
          throw QuizError.limitExceeded(
            field: "question", limit: QuizRules.maxQuestions,
            description: "the import would take the quiz past \(QuizRules.maxQuestions) questions")
        }
        let violations = QuizRules.questionViolations(question)
        if !violations.isEmpty {
          errors.append(
            .with {
              $0.index = Int32(buffered.count)
              $0.violations = violations.map { v in
                .with {
                  $0.field = v.field; $0.description_p = v.description
                }
              }
            })
        }
        buffered.append(question)
      case nil:
        throw QuizError.invalidArgument(field: "item", description: "each message carries a target or a question")
      }
    }
    guard let target else { throw QuizError.invalidArgument(field: "target", description: "the stream named no quiz") }
    guard errors.isEmpty, !buffered.isEmpty else {
      return .with {
        $0.imported = 0; $0.errors = errors
      }
    }
    let quiz = try await self.write(id: target.quizID, etag: target.etag, load: .everything) { quiz in
      try QuizRules.questionsEditable(quiz)
      var questions = quiz.questions ?? []
      // Re-checked in the transaction: questions may have been added while the client streamed.
      guard questions.count + buffered.count <= QuizRules.maxQuestions else {
        throw QuizError.limitExceeded(
          field: "question", limit: QuizRules.maxQuestions, description: "the import would take the quiz past \(QuizRules.maxQuestions) questions")
      }
      questions += buffered.map { QuizRules.normalized($0, id: Self.newID("qq_")) }
      quiz.questions = questions
      return WriteEffect(replaceQuestions: true, recomputeStatistics: true)
    }
    return .with {
      $0.imported = Int32(buffered.count)
      $0.etag = quiz.etag
    }
  }
}
