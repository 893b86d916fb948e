import Foundation
import GRPCCore
import QuizwireProtos
import Storage

extension QuizService {
  /// Fields UpdateQuiz may change; an empty update mask means all of them.
  static let updatableFields: Set<String> = ["title", "description", "tags", "question_time_limit_seconds", "questions"]

  public func createQuiz(request: Quiz_V1_CreateQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    // The validation interceptor checked the content; a host without interceptors still may
    // not store invalid input.
    try request.fieldViolations.check()
    let author = try QuizAccess.author(forCreateBy: Self.viewer())
    let profile = try await self.authorProfile(author)
    let now = self.now()
    let input = request.quiz
    var quiz = QuizRecord(
      id: Self.newID("qz_"), authorID: author, title: input.title.trimmingCharacters(in: .whitespaces), description: input.description_p,
      tags: QuizRules.normalizedTags(input.tags), state: .draft,
      questionTimeLimitSeconds: Int(input.questionTimeLimitSeconds == 0 ? QuizRules.defaultTimeLimit : input.questionTimeLimitSeconds),
      questionCount: input.questions.count, etag: "", createTimeMs: now, updateTimeMs: now,
      questions: input.questions.map { QuizRules.normalized($0, id: Self.newID("qq_")) })
    quiz.etag = QuizEtag.initial(quiz)
    quiz = try await self.db.transaction { uow in
      var quiz = quiz
      // The newer of the profile just read and a rename applied since.
      let name = try await self.quizzes.newestAuthorName(profile, in: uow)
      quiz.authorDisplayName = name.displayName
      quiz.authorNameVersion = name.version
      try await self.quizzes.insert(quiz, in: uow)
      try await self.recordChange(quiz, kind: .created, in: uow)
      return quiz
    }
    await self.observer?.committed(QuizChange(kind: .created, id: quiz.id, etag: quiz.etag, authorID: quiz.authorID))
    self.logger.info("quiz created", metadata: ["quiz_id": .string(quiz.id), "author_id": .string(author)])
    return Self.message(quiz, answerKeys: true)
  }

  /// The author's public profile from auth, for a new quiz. Auth unreachable: UNAVAILABLE
  /// (a quiz is never stored with a wrong name). An author auth doesn't know gets an empty
  /// name at version 0 (a later rename fills it).
  func authorProfile(_ authorID: String) async throws -> AuthorProfile {
    do {
      return try await self.authors.profiles(ids: [authorID])[authorID] ?? AuthorProfile(id: authorID, displayName: "", version: 0)
    } catch let error as RPCError where error.code == .deadlineExceeded || error.code == .cancelled {
      throw error
    } catch {
      self.logger.warning(
        "author lookup failed; quiz not created", metadata: ["author_id": .string(authorID), "error": .string("\(error)")])
      throw RPCError(code: .unavailable, message: "the author's profile can't be read right now (auth service unavailable); try again")
    }
  }

  public func updateQuiz(request: Quiz_V1_UpdateQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    try request.fieldViolations.check()
    let fields = request.updateMask.paths.isEmpty ? Self.updatableFields : Set(request.updateMask.paths)
    let input = request.quiz
    let etag = request.etag.isEmpty ? input.etag : request.etag
    let quiz = try await self.write(id: input.id, etag: etag, load: QuizLoad(tags: true, questions: true)) { quiz in
      try QuizRules.detailsEditable(quiz)
      var effect = WriteEffect()
      if fields.contains("questions") {
        try QuizRules.questionsEditable(quiz)
        // Questions the client sends back keep their ids; new ones get the server's.
        let existing = Set((quiz.questions ?? []).map(\.id))
        quiz.questions = input.questions.map { q in QuizRules.normalized(q, id: existing.contains(q.id) ? q.id : Self.newID("qq_")) }
        effect.replaceQuestions = true
      }
      let (title, tags) = (quiz.title, quiz.tags)
      if fields.contains("title") { quiz.title = input.title.trimmingCharacters(in: .whitespaces) }
      if fields.contains("description") { quiz.description = input.description_p }
      if fields.contains("tags") {
        quiz.tags = QuizRules.normalizedTags(input.tags)
        effect.replaceTags = true
      }
      effect.listFieldsChanged = quiz.title != title || quiz.tags != tags
      if fields.contains("question_time_limit_seconds") {
        quiz.questionTimeLimitSeconds = Int(input.questionTimeLimitSeconds == 0 ? QuizRules.defaultTimeLimit : input.questionTimeLimitSeconds)
      }
      return effect
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func deleteQuiz(request: Quiz_V1_DeleteQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    let quiz = try await self.audit.recording("quiz.delete", target: request.id) {
      try await self.write(id: request.id, etag: request.etag, load: .row) { quiz in
        quiz.deletedTimeMs = self.now()
        return WriteEffect(kind: .deleted)
      }
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func publishQuiz(request: Quiz_V1_PublishQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    let quiz = try await self.write(id: request.id, etag: request.etag, load: .everything) { quiz in
      // Publishing a published quiz is a no-op, so a retried call succeeds.
      if quiz.state == .published { return WriteEffect(unchanged: true) }
      if let problem = QuizRules.publishProblem(quiz) { throw problem }
      quiz.state = .published
      return WriteEffect(kind: .published)
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func unpublishQuiz(request: Quiz_V1_UnpublishQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    let quiz = try await self.write(id: request.id, etag: request.etag, load: .everything) { quiz in
      // Back to draft from published or archived. Attempts already started hold a copy of
      // their questions (scoring reads them at start), so editing the draft can't change them.
      if quiz.state == .draft { return WriteEffect(unchanged: true) }
      quiz.state = .draft
      return WriteEffect(kind: .unpublished)
    }
    return Self.message(quiz, answerKeys: true)
  }

  public func archiveQuiz(request: Quiz_V1_ArchiveQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    let quiz = try await self.write(id: request.id, etag: request.etag, load: .everything) { quiz in
      if quiz.state == .archived { return WriteEffect(unchanged: true) }
      quiz.state = .archived
      return WriteEffect(kind: .archived)
    }
    return Self.message(quiz, answerKeys: true)
  }
}
