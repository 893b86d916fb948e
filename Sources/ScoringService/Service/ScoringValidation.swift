import QuizwireProtos
import ServiceKit

// Input rules, run by the validation interceptor before the handlers (INVALID_ARGUMENT with
// the field paths). Access and state rules stay in the handlers.

extension Scoring_V1_StartAttemptRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quizID.isEmpty, "quiz_id", "is required")
    violations.require(self.idempotencyKey.utf8.count <= 200, "idempotency_key", "is at most 200 bytes")
  }
}

extension Scoring_V1_GetAttemptRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.id.isEmpty, "id", "is required")
  }
}

extension Scoring_V1_ListAttemptsRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(self.quizID.isEmpty != self.userID.isEmpty, "quiz_id", "exactly one of quiz_id and user_id is required")
    violations.require(self.pageSize >= 0, "page_size", "must not be negative")
  }
}

extension Scoring_V1_GetLeaderboardRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quizID.isEmpty, "quiz_id", "is required")
    violations.require(self.pageSize >= 0, "page_size", "must not be negative")
  }
}

extension Scoring_V1_WatchLeaderboardRequest: ValidatableMessage {
  public func validate(into violations: inout FieldViolations) {
    violations.require(!self.quizID.isEmpty, "quiz_id", "is required")
    violations.require((0...LeaderboardHub.maxTop).contains(Int(self.topN)), "top_n", "must be 1..100 (0: 10)")
  }
}
