import Foundation
import QuizwireProtos

/// A parsed `read_mask` (AIP-157): which top-level `Quiz` fields the caller wants. Empty (or
/// `*`) means all. Decided before anything is loaded — a list with `read_mask=id,title`
/// never loads questions or tags (`needsQuestions`, `needsTags`) — and applied before
/// serialization.
public struct QuizReadMask: Sendable, Hashable {
  public enum Path: String, Sendable, Hashable, CaseIterable {
    case id, authorID = "author_id", title, description, tags, state, questions
    case questionTimeLimitSeconds = "question_time_limit_seconds", etag
    case createTime = "create_time", updateTime = "update_time", deleteTime = "delete_time", questionCount = "question_count"
    case authorDisplayName = "author_display_name"
    case playCount = "play_count", averageScore = "average_score", averageScoreFraction = "average_score_fraction"
  }

  /// nil: every field.
  public let paths: Set<Path>?

  public static let all = QuizReadMask(paths: nil)

  init(paths: Set<Path>?) { self.paths = paths }

  /// From `FieldMask.paths` (each may itself be a comma-separated list, as query strings
  /// send it). An unknown path is INVALID_ARGUMENT naming it.
  public static func parse(_ paths: [String]) throws(QuizQueryError) -> QuizReadMask {
    var selected = Set<Path>()
    for item in paths.flatMap({ $0.split(separator: ",") }) {
      let name = item.trimmingCharacters(in: .whitespaces)
      if name == "*" { return .all }
      if name.isEmpty { continue }
      // FieldMask's JSON form is lowerCamelCase; accept it as the same path.
      guard let path = Path(rawValue: name) ?? Path.allCases.first(where: { Self.camel($0.rawValue) == name }) else {
        throw QuizQueryError(
          field: "read_mask", reason: "unknown path \"\(name)\" (paths: \(Path.allCases.map(\.rawValue).joined(separator: ", ")))")
      }
      selected.insert(path)
    }
    return selected.isEmpty ? .all : QuizReadMask(paths: selected)
  }

  public func includes(_ path: Path) -> Bool { self.paths?.contains(path) ?? true }

  /// The repository must load questions (with their choices and answer keys).
  public var needsQuestions: Bool { self.includes(.questions) }
  /// The repository must load tags.
  public var needsTags: Bool { self.includes(.tags) }

  /// `id,title`: one spelling per mask, for cache keys.
  public var canonical: String {
    guard let paths = self.paths else { return "*" }
    return Path.allCases.filter(paths.contains).map(\.rawValue).joined(separator: ",")
  }

  /// Clears every field the mask leaves out.
  public func apply(to quiz: inout Quiz_V1_Quiz) {
    guard self.paths != nil else { return }
    if !self.includes(.id) { quiz.id = "" }
    if !self.includes(.authorID) { quiz.authorID = "" }
    if !self.includes(.title) { quiz.title = "" }
    if !self.includes(.description) { quiz.description_p = "" }
    if !self.includes(.tags) { quiz.tags = [] }
    if !self.includes(.state) { quiz.state = .unspecified }
    if !self.includes(.questions) { quiz.questions = [] }
    if !self.includes(.questionTimeLimitSeconds) { quiz.questionTimeLimitSeconds = 0 }
    if !self.includes(.etag) { quiz.etag = "" }
    if !self.includes(.createTime) { quiz.clearCreateTime() }
    if !self.includes(.updateTime) { quiz.clearUpdateTime() }
    if !self.includes(.deleteTime) { quiz.clearDeleteTime() }
    if !self.includes(.questionCount) { quiz.questionCount = 0 }
    if !self.includes(.authorDisplayName) { quiz.authorDisplayName = "" }
    if !self.includes(.playCount) { quiz.playCount = 0 }
    if !self.includes(.averageScore) { quiz.averageScore = 0 }
    if !self.includes(.averageScoreFraction) { quiz.averageScoreFraction = 0 }
  }

  private static func camel(_ snake: String) -> String {
    let parts = snake.split(separator: "_")
    return ([String(parts[0])] + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }).joined()
  }
}
