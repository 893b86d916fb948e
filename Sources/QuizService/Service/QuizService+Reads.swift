import GRPCCore
import QuizwireProtos
import Storage

extension QuizService {
  /// At most this many ids per BatchGetQuizzes (the gateway's GraphQL loader batches under it).
  public static let maxBatchIDs = 100

  public func getQuiz(request: Quiz_V1_GetQuizRequest, context: ServerContext) async throws -> Quiz_V1_Quiz {
    switch try await self.quizReply(request) {
    case .message(let quiz): return quiz
    case .cached(let cached): return cached.message
    }
  }

  /// GetQuiz's answer: a published quiz an anonymous caller reads comes from the cache with
  /// its serialized form (`QuizReply`), anything else is read and built for the caller.
  func quizReply(_ request: Quiz_V1_GetQuizRequest) async throws -> QuizReply {
    let mask = try QuizReadMask.parse(request.readMask.paths)
    let viewer = Self.viewer()
    // Only callers who see exactly what anonymous callers see share the cache: a hit is a
    // published quiz without answer keys.
    let cache = QuizAccess.listing(viewer).scope == "anonymous" && !request.showDeleted ? self.cache : nil
    if let hit = cache?.cachedQuiz(id: request.id, mask: mask.canonical) { return .cached(hit) }
    let ticket = cache?.ticket()
    let found = try await self.db.read { uow in
      try await self.quizzes.find(id: request.id, load: QuizLoad(tags: mask.needsTags, questions: mask.needsQuestions), in: uow)
    }
    guard let quiz = found, case .visible(let answerKeys) = QuizAccess.read(quiz, by: viewer, showDeleted: request.showDeleted) else {
      throw QuizError.notFound(request.id)
    }
    let message = Self.message(quiz, answerKeys: answerKeys, mask: mask)
    if let cache, let ticket, quiz.state == .published, !quiz.isDeleted, !answerKeys,
      let serialized = cache.storeQuiz(message, id: quiz.id, authorID: quiz.authorID, mask: mask.canonical, ticket: ticket)
    {
      return .cached(CachedQuiz(message: message, serialized: serialized))
    }
    return .message(message)
  }

  public func listQuizzes(request: Quiz_V1_ListQuizzesRequest, context: ServerContext) async throws -> Quiz_V1_ListQuizzesResponse {
    let viewer = Self.viewer()
    let listing = QuizAccess.listing(viewer, showDeleted: request.showDeleted)
    let query = try ListQuery(
      filter: request.filter, orderBy: request.orderBy, pageSize: request.pageSize, pageToken: request.pageToken, offset: request.offset,
      readMask: request.readMask.paths, showDeleted: listing.showDeleted, scope: listing.scope, tokens: self.tokens)
    // Pages computed for the anonymous scope are cached (tagged with every quiz and author on
    // them, dropped on any write that could change them).
    let cache = listing.scope == "anonymous" ? self.cache : nil
    let cacheKey = query.cacheKey + "\ntotal:\(request.includeTotal)"
    if let hit = cache?.list(cacheKey) { return hit }
    let ticket = cache?.ticket()
    let load = QuizLoad(tags: query.readMask.needsTags, questions: query.readMask.needsQuestions)
    let (rows, total) = try await self.db.read { uow in
      let rows = try await self.quizzes.list(tail: QuizQuerySQL.pageTail(query, visibility: listing.visibility), load: load, in: uow)
      let total = request.includeTotal ? try await self.quizzes.count(QuizQuerySQL.count(query, visibility: listing.visibility), in: uow) : nil
      return (rows, total)
    }
    let (page, next) = query.page(of: rows) { $0.sortKey }
    let response = Quiz_V1_ListQuizzesResponse.with {
      $0.quizzes = page.map { Self.message($0, answerKeys: QuizAccess.answerKeys($0, by: viewer), mask: query.readMask) }
      $0.nextPageToken = next
      if let total { $0.totalSize = Int32(clamping: total) }
    }
    if let cache, let ticket { cache.storeList(response, key: cacheKey, rows: page, ticket: ticket) }
    return response
  }

  public func batchGetQuizzes(
    request: Quiz_V1_BatchGetQuizzesRequest, context: ServerContext
  ) async throws -> Quiz_V1_BatchGetQuizzesResponse {
    try request.fieldViolations.check()
    let mask = try QuizReadMask.parse(request.readMask.paths)
    let viewer = Self.viewer()
    let unique = Array(Set(request.ids))
    let found = try await self.db.read { uow in
      try await self.quizzes.find(ids: unique, load: QuizLoad(tags: mask.needsTags, questions: mask.needsQuestions), in: uow)
    }
    let byID = Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    var response = Quiz_V1_BatchGetQuizzesResponse()
    // Request order; what doesn't exist and what the caller may not see read the same.
    for id in request.ids {
      if let quiz = byID[id], case .visible(let answerKeys) = QuizAccess.read(quiz, by: viewer) {
        response.quizzes.append(Self.message(quiz, answerKeys: answerKeys, mask: mask))
      } else {
        response.missingIds.append(id)
      }
    }
    return response
  }

  public func getAnswerKey(request: Quiz_V1_GetAnswerKeyRequest, context: ServerContext) async throws -> Quiz_V1_GetAnswerKeyResponse {
    let viewer = Self.viewer()
    let found = try await self.db.read { uow in try await self.quizzes.find(id: request.quizID, load: QuizLoad(tags: false, questions: true), in: uow) }
    // servicesOnly already refused everyone else; the policy still decides (deleted → NOT_FOUND).
    guard let quiz = found, QuizAccess.read(quiz, by: viewer) == .visible(answerKeys: true) else { throw QuizError.notFound(request.quizID) }
    return .with {
      $0.quizID = quiz.id
      $0.etag = quiz.etag
      $0.answerKeys = (quiz.questions ?? []).map { q in
        .with {
          $0.questionID = q.id
          $0.kind = q.kind
          $0.points = q.points
          $0.answerKey = q.answerKey
        }
      }
    }
  }

  /// Streams every quiz the caller may export, oldest first, reading `exportBatch` at a time
  /// from a keyset cursor: memory holds one batch, never the table, and each batch's
  /// connection is released before its quizzes are written (a slow reader holds no
  /// connection). Writes wait for the transport's flow control.
  public func exportQuizzes(
    request: Quiz_V1_ExportQuizzesRequest, response: RPCWriter<Quiz_V1_Quiz>, context: ServerContext
  ) async throws {
    let viewer = Self.viewer()
    let listing = QuizAccess.listing(viewer)
    let query = try ListQuery(
      filter: request.filter, orderBy: "create_time", pageSize: 0, pageToken: "", offset: 0, readMask: request.readMask.paths,
      showDeleted: false, scope: listing.scope, tokens: self.tokens)
    let load = QuizLoad(tags: query.readMask.needsTags, questions: query.readMask.needsQuestions)
    var after: KeysetPosition?
    while true {
      let tail = QuizQuerySQL.cursorTail(query, visibility: listing.visibility, after: after, limit: self.exportBatch)
      let batch = try await self.db.read { uow in try await self.quizzes.list(tail: tail, load: load, in: uow) }
      for quiz in batch {
        try await response.write(Self.message(quiz, answerKeys: QuizAccess.answerKeys(quiz, by: viewer), mask: query.readMask))
      }
      guard batch.count == self.exportBatch, let last = batch.last else { return }
      after = last.sortKey.position(in: query.order)
    }
  }
}
