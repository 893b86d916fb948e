import Foundation
import Logging
import QuizwireProtos
import ServiceKit
import Storage
import SwiftProtobuf

/// What a cached entry answers: one quiz under a read mask, or one list page.
public enum QuizCacheKey: Sendable, Hashable {
  case quiz(id: String, mask: String)
  /// `ListQuery.cacheKey`.
  case list(String)
}

public enum QuizCacheValue: Sendable {
  case quiz(CachedQuiz)
  case list(Quiz_V1_ListQuizzesResponse)
}

/// A cached quiz and its wire form, serialized once when it was stored: every anonymous
/// read of it is the same bytes (`QuizReply.serialized`).
public struct CachedQuiz: Sendable {
  public let message: Quiz_V1_Quiz
  public let serialized: [UInt8]
}

/// A `QuizChange` as other replicas hear it: `quiz.changed{id, etag}` plus what they need
/// to invalidate (author, whether list membership changed).
struct QuizChangeMessage: Codable, Sendable, Hashable {
  var event = "quiz.changed"
  var id: String
  var etag: String
  var authorID: String
  var lists: Bool

  enum CodingKeys: String, CodingKey {
    case event, id, etag, authorID = "author_id", lists
  }
}

/// The quiz service's cache-aside for reads, on ServiceKit's `ResponseCache`.
///
/// Only what an anonymous caller may see is cached — published, not deleted quizzes,
/// without answer keys — and only answers computed for the anonymous scope are stored
/// (the handler decides and calls `store…` only then), so a hit can never show anyone
/// more than they may see; drafts and answer keys never enter.
///
/// Invalidation, all three kinds:
/// - tags: a quiz entry is tagged `quiz:<id>`, a list page `quiz:<id>` and `author:<id>`
///   for every row on it, so a write drops exactly the entries that showed the quiz;
/// - a list generation (`lists` tag on every page): create, publish, unpublish, archive and
///   delete drop every list page;
/// - events: as the service's `QuizChangeObserver`, every write posts its change on
///   `quiz_changed` through the `ChangeNotifier` inside its unit of work (`pending`), so
///   every other replica applies it once it commits; this replica applies it at once after
///   the commit (`committed`). A `.reset` from the notifier (LISTEN connection lost)
///   flushes everything. Author renames (`postAuthorRenamed`) and counted plays
///   (`postPlayed`) are posted the same way from the consumers' units of work.
public final class QuizCache: QuizChangeObserver, Sendable {
  public static let channel = "quiz_changed"
  static let listsTag = "lists"

  public let store: ResponseCache<QuizCacheKey, QuizCacheValue>
  private let notifier: ChangeNotifier?
  private let changes: AsyncStream<ChangeNotification>?
  private let logger: Logger

  /// Subscribes to `notifier` at once (run `follow()` to apply what arrives); without one,
  /// only this process's writes invalidate.
  public init(
    limits: ResponseCache<QuizCacheKey, QuizCacheValue>.Limits = .init(), notifier: ChangeNotifier?, logger: Logger,
    clock: @escaping ResponseCache<QuizCacheKey, QuizCacheValue>.Clock = { ContinuousClock.now }
  ) throws {
    self.store = ResponseCache(name: "quiz", limits: limits, clock: clock)
    self.notifier = notifier
    self.changes = try notifier?.subscribe(channel: Self.channel)
    self.logger = logger
  }

  /// Take before reading the database for a value to store (see `ResponseCache`).
  public func ticket() -> ResponseCache<QuizCacheKey, QuizCacheValue>.Ticket { self.store.ticket() }

  public func quiz(id: String, mask: String) -> Quiz_V1_Quiz? { self.cachedQuiz(id: id, mask: mask)?.message }

  /// The cached quiz with its serialized form.
  public func cachedQuiz(id: String, mask: String) -> CachedQuiz? {
    guard case .quiz(let quiz)? = self.store.value(for: .quiz(id: id, mask: mask)) else { return nil }
    return quiz
  }

  /// Stores a published quiz as an anonymous caller sees it (no answer keys), and returns
  /// it serialized (nil if it can't be: it is then not stored).
  @discardableResult
  public func storeQuiz(
    _ quiz: Quiz_V1_Quiz, id: String, authorID: String, mask: String, ticket: ResponseCache<QuizCacheKey, QuizCacheValue>.Ticket
  ) -> [UInt8]? {
    guard let serialized: [UInt8] = try? quiz.serializedBytes() else { return nil }
    // The message and its bytes both stay in memory.
    let bytes = Self.cost(of: quiz) + serialized.count + id.utf8.count + mask.utf8.count
    self.store.insert(
      .quiz(CachedQuiz(message: quiz, serialized: serialized)), for: .quiz(id: id, mask: mask), bytes: bytes,
      tags: ["quiz:\(id)", "author:\(authorID)"], ticket: ticket)
    return serialized
  }

  public func list(_ key: String) -> Quiz_V1_ListQuizzesResponse? {
    guard case .list(let page)? = self.store.value(for: .list(key)) else { return nil }
    return page
  }

  /// Stores a list page computed for the anonymous scope; `rows` are the quizzes on it (the
  /// response may be masked down to fields that don't name them).
  public func storeList(
    _ page: Quiz_V1_ListQuizzesResponse, key: String, rows: [QuizRecord], ticket: ResponseCache<QuizCacheKey, QuizCacheValue>.Ticket
  ) {
    var tags: Set<String> = [Self.listsTag]
    for row in rows {
      tags.insert("quiz:\(row.id)")
      tags.insert("author:\(row.authorID)")
    }
    self.store.insert(.list(page), for: .list(key), bytes: Self.cost(of: page) + key.utf8.count, tags: tags, ticket: ticket)
  }

  /// Inside the write's unit of work: the notification other replicas apply, sent only if
  /// it commits.
  public func pending(_ change: QuizChange, in uow: UnitOfWork) async throws {
    guard let notifier = self.notifier else { return }
    let message = QuizChangeMessage(id: change.id, etag: change.etag, authorID: change.authorID, lists: change.membershipChanged)
    let payload = String(decoding: try JSONEncoder().encode(message), as: UTF8.self)
    try await notifier.notify(channel: Self.channel, payload: payload, in: uow)
  }

  /// After the commit, on the writing replica: a caller reads its own write here without
  /// waiting for the notification's round trip.
  public func committed(_ change: QuizChange) async {
    self.invalidate(id: change.id, lists: change.membershipChanged)
  }

  /// Drops every entry that showed quiz `id`, and every list page when `lists`.
  public func invalidate(id: String, lists: Bool) {
    self.store.invalidate(tag: "quiz:\(id)")
    if lists { self.bumpListGeneration() }
  }

  /// Drops every list page (a quiz may now belong on any of them).
  public func bumpListGeneration() { self.store.invalidate(tag: Self.listsTag) }

  /// Drops every entry that showed a quiz of `authorID`.
  public func invalidate(author authorID: String) { self.store.invalidate(tag: "author:\(authorID)") }

  /// The `event` of a notification that an author's display name changed on their quizzes.
  static let authorRenamedEvent = "quiz.author_renamed"

  /// Inside the unit of work that changed the display name on `authorID`'s quizzes: every
  /// replica (this one included) drops the entries that showed that author once it commits.
  /// (A replica too old to know the event reads it as a change of quiz "", a no-op; its
  /// entries age out with the TTL.)
  public static func postAuthorRenamed(_ authorID: String, in uow: UnitOfWork) async throws {
    let message = QuizChangeMessage(event: Self.authorRenamedEvent, id: "", etag: "", authorID: authorID, lists: false)
    let payload = String(decoding: try JSONEncoder().encode(message), as: UTF8.self)
    try await ChangeNotifier.post(channel: Self.channel, payload: payload, in: uow)
  }

  /// The `event` of a notification that a quiz's play statistics changed.
  static let playedEvent = "quiz.played"

  /// Inside the unit of work that counted a play of `quizID`: every replica (this one
  /// included) drops the entries that showed that quiz once it commits, so a read after that
  /// shows the new count (not content: the etag stays). Read as a change of `quizID` without
  /// list membership, also by replicas that predate the event.
  public static func postPlayed(quizID: String, in uow: UnitOfWork) async throws {
    let message = QuizChangeMessage(event: Self.playedEvent, id: quizID, etag: "", authorID: "", lists: false)
    let payload = String(decoding: try JSONEncoder().encode(message), as: UTF8.self)
    try await ChangeNotifier.post(channel: Self.channel, payload: payload, in: uow)
  }

  public func flushAll() { self.store.flushAll() }

  /// Applies the notifications of every replica until the notifier closes. A `.reset`
  /// (notifications may have been missed) flushes everything.
  public func follow() async {
    guard let changes = self.changes else { return }
    for await notification in changes {
      switch notification {
      case .reset:
        self.store.flushAll()
      case .payload(let text):
        guard let change = try? JSONDecoder().decode(QuizChangeMessage.self, from: Data(text.utf8)) else {
          // Not ours to read (a newer replica's format?): dropping everything is the safe answer.
          self.logger.warning("quiz cache: unreadable change notification; cache flushed")
          self.store.flushAll()
          continue
        }
        if change.event == Self.authorRenamedEvent {
          self.invalidate(author: change.authorID)
        } else {
          self.invalidate(id: change.id, lists: change.lists)
        }
      }
    }
  }

  /// Serialized size plus bookkeeping: what an entry costs in the byte bound.
  static func cost(of message: some SwiftProtobuf.Message) -> Int {
    let bytes: [UInt8] = (try? message.serializedBytes()) ?? []
    return bytes.count + 64
  }
}
