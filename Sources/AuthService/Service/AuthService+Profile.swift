import Foundation
import GRPCCore
import Logging
import QuizwireProtos
import ServiceContextModule
import ServiceKit
import Storage

/// Public profiles and the `user.*` events. Every change of a user's public profile (created,
/// renamed, roles changed) appends its event to the outbox in the unit of work that makes the
/// change, keyed by the user id with the profile version as the key version.
extension AuthService {
  /// Event types of the "users" feed.
  package enum UserEvent {
    package static let registered = "user.registered"
    package static let renamed = "user.renamed"
    package static let rolesChanged = "user.roles_changed"
  }

  /// The most ids one `BatchGetUsers` may ask for.
  package static let maxBatchGetUsers = 1000

  package func updateProfile(request: Auth_V1_UpdateProfileRequest, context: ServerContext) async throws -> Auth_V1_User {
    let principal = try Self.currentPrincipal()
    // A person's own profile: their sign-in, or a key or app they gave `profile:write`
    // (the policy checks the scope); never a service or an OAuth client acting for itself.
    guard principal.kind == .user || principal.kind == .apiKey else {
      throw RPCError(code: .permissionDenied, message: "only users have a profile")
    }
    guard let displayName = Self.validDisplayName(request.displayName) else { throw request.fieldViolations.error() }
    let userID = try await self.ownerID(of: principal)
    let now = self.nowMs()
    let trace = Self.currentTraceParent()
    let (user, changed) = try await self.db.transaction { uow -> (UserRecord?, Bool) in
      let change = try await self.users.rename(id: userID, displayName: displayName, nowMs: now, in: uow)
      guard case .changed(let version) = change else {
        return (try await self.users.find(id: userID, in: uow), false)
      }
      let payload = try Auth_V1_UserRenamed.with {
        $0.userID = userID
        $0.displayName = displayName
      }.serializedData()
      try await Outbox.append(
        type: UserEvent.renamed, key: userID, keyVersion: version, payload: payload, traceContext: trace, timeMs: now, in: uow)
      return (try await self.users.find(id: userID, in: uow), true)
    }
    guard let user else { throw RPCError(code: .notFound, message: "no user for this principal") }
    // The id only: a display name next to an email in a log line identifies a person.
    if changed { self.logger.info("user renamed", metadata: ["user_id": .string(user.id)]) }
    return Self.message(user)
  }

  package func batchGetUsers(request: Auth_V1_BatchGetUsersRequest, context: ServerContext) async throws -> Auth_V1_BatchGetUsersResponse {
    // Validated (AuthValidation); this guard keeps a host without interceptors from querying
    // an unbounded list.
    guard request.ids.count <= Self.maxBatchGetUsers else { throw request.fieldViolations.error() }
    let found = try await self.db.read { uow in try await self.users.publicProfiles(ids: request.ids, in: uow) }
    let byID = Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    var seen: Set<String> = []
    return .with {
      // In the order asked, each once; unknown ids left out.
      $0.users = request.ids.compactMap { id in
        guard seen.insert(id).inserted, let profile = byID[id] else { return nil }
        return Auth_V1_PublicProfile.with {
          $0.id = profile.id
          $0.displayName = profile.displayName
          $0.version = profile.profileVersion
        }
      }
    }
  }

  /// `user.registered` for a user just inserted in `uow`.
  func emitRegistered(_ user: UserRecord, in uow: UnitOfWork) async throws {
    let payload = try Auth_V1_UserRegistered.with {
      $0.userID = user.id
      $0.displayName = user.displayName
      $0.roles = user.roles.sorted()
    }.serializedData()
    try await Outbox.append(
      type: UserEvent.registered, key: user.id, keyVersion: user.profileVersion, payload: payload,
      traceContext: Self.currentTraceParent(), timeMs: user.createdAtMs, in: uow)
  }

  /// `user.roles_changed` for a roles change made in `uow`.
  func emitRolesChanged(userID: String, roles: Set<String>, version: Int64, nowMs: Int64, in uow: UnitOfWork) async throws {
    let payload = try Auth_V1_UserRolesChanged.with {
      $0.userID = userID
      $0.roles = roles.sorted()
    }.serializedData()
    try await Outbox.append(
      type: UserEvent.rolesChanged, key: userID, keyVersion: version, payload: payload,
      traceContext: Self.currentTraceParent(), timeMs: nowMs, in: uow)
  }

  /// The W3C `traceparent` of the current call's span, stored with its events.
  static func currentTraceParent() -> String? {
    ServiceContext.current?.traceContext?.traceParentHeaderValue
  }

  /// A display name as stored: trimmed, 1–100 characters of which at least one is visible,
  /// no control characters; nil when it breaks a rule.
  static func validDisplayName(_ raw: String) -> String? {
    let name = raw.trimmingCharacters(in: .whitespacesAndNewlines)
    guard (1...100).contains(name.count), !Self.hasControlCharacters(name), Self.hasVisibleCharacter(name) else { return nil }
    return name
  }

  /// Something a reader sees: not only spaces and invisible format characters (zero-width
  /// space, joiners, direction marks).
  static func hasVisibleCharacter(_ text: String) -> Bool {
    text.unicodeScalars.contains { scalar in
      !scalar.properties.isWhitespace && scalar.properties.generalCategory != .format
        && scalar.properties.generalCategory != .control
    }
  }
}
