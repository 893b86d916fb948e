import SQLKit
import Storage

/// A stored user. `roles` is a set of "user", "author", "admin".
package struct UserRecord: Sendable, Hashable {
  package var id: String
  package var email: String
  package var displayName: String
  package var passwordHash: String
  package var roles: Set<String>
  package var failedLogins: Int
  package var lockedUntilMs: Int64
  package var createdAtMs: Int64
  package var updatedAtMs: Int64
  /// Grows with every rename and roles change: the key version of the `user.*` events.
  package var profileVersion: Int64 = 1
}

/// What anyone may know about a user (`BatchGetUsers`): never the email.
package struct PublicProfileRecord: Sendable, Hashable {
  package var id: String
  package var displayName: String
  package var profileVersion: Int64
}

/// The outcome of a profile change (rename, roles).
package enum ProfileChange: Sendable, Hashable {
  case notFound
  /// The value was already that: nothing changed, no version used.
  case unchanged
  /// Changed; the profile's new version.
  case changed(version: Int64)
}

package protocol UserRepository: Sendable {
  func insert(_ user: UserRecord, in uow: UnitOfWork) async throws
  func find(id: String, in uow: UnitOfWork) async throws -> UserRecord?
  func find(email: String, in uow: UnitOfWork) async throws -> UserRecord?
  /// Users ordered by (created_at, id), starting after `after` (keyset pagination).
  func list(after: (createdAtMs: Int64, id: String)?, limit: Int, in uow: UnitOfWork) async throws -> [UserRecord]
  /// Sets the roles; a change bumps the profile version.
  func setRoles(id: String, roles: Set<String>, nowMs: Int64, in uow: UnitOfWork) async throws -> ProfileChange
  /// Sets the display name; a change bumps the profile version.
  func rename(id: String, displayName: String, nowMs: Int64, in uow: UnitOfWork) async throws -> ProfileChange
  /// Public profiles of the users among `ids` that exist, in no particular order.
  func publicProfiles(ids: [String], in uow: UnitOfWork) async throws -> [PublicProfileRecord]
  func setPasswordHash(id: String, hash: String, nowMs: Int64, in uow: UnitOfWork) async throws
  func recordLogin(id: String, failedLogins: Int, lockedUntilMs: Int64, in uow: UnitOfWork) async throws
  /// Counts one failed sign-in in a single statement; at `maxFailures` the account locks
  /// until `lockUntilMs` and the count restarts. Returns whether this failure locked it.
  func recordFailedLogin(id: String, maxFailures: Int, lockUntilMs: Int64, in uow: UnitOfWork) async throws -> Bool
}

/// The one implementation, on SQLKit; runs on SQLite and PostgreSQL alike.
package struct SQLUserRepository: UserRepository {
  package init() {}

  /// Every read selects the same columns, decoded by name into `UserRow`.
  static let select: SQLQueryString = """
    SELECT id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms,
           profile_version FROM users
    """

  package func insert(_ u: UserRecord, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      INSERT INTO users (
        id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms, profile_version)
      VALUES (\(bind: u.id), \(bind: u.email), \(bind: u.displayName), \(bind: u.passwordHash), \(bind: UserRow.encode(u.roles)),
              \(bind: u.failedLogins), \(bind: u.lockedUntilMs), \(bind: u.createdAtMs), \(bind: u.updatedAtMs), \(bind: u.profileVersion))
      """)
  }

  package func find(id: String, in uow: UnitOfWork) async throws -> UserRecord? {
    try await Self.users(Self.select + " WHERE id = \(bind: id)", in: uow).first
  }

  package func find(email: String, in uow: UnitOfWork) async throws -> UserRecord? {
    try await Self.users(Self.select + " WHERE email = \(bind: email)", in: uow).first
  }

  package func list(after: (createdAtMs: Int64, id: String)?, limit: Int, in uow: UnitOfWork) async throws -> [UserRecord] {
    if let after {
      return try await Self.users(
        Self.select + """
           WHERE created_at_ms > \(bind: after.createdAtMs) OR (created_at_ms = \(bind: after.createdAtMs) AND id > \(bind: after.id))
          ORDER BY created_at_ms, id LIMIT \(bind: limit)
          """, in: uow)
    }
    return try await Self.users(Self.select + " ORDER BY created_at_ms, id LIMIT \(bind: limit)", in: uow)
  }

  package func setRoles(id: String, roles: Set<String>, nowMs: Int64, in uow: UnitOfWork) async throws -> ProfileChange {
    let encoded = UserRow.encode(roles)
    // One statement: a concurrent change of the same row re-checks the condition after it
    // commits (PostgreSQL) or runs after it (SQLite), so each real change gets its own version.
    let rows = try await uow.sql.raw(
      """
      UPDATE users SET roles = \(bind: encoded), updated_at_ms = \(bind: nowMs), profile_version = profile_version + 1
      WHERE id = \(bind: id) AND roles <> \(bind: encoded) RETURNING profile_version
      """
    ).all()
    return try await Self.outcome(rows, id: id, in: uow)
  }

  package func rename(id: String, displayName: String, nowMs: Int64, in uow: UnitOfWork) async throws -> ProfileChange {
    let rows = try await uow.sql.raw(
      """
      UPDATE users SET display_name = \(bind: displayName), updated_at_ms = \(bind: nowMs), profile_version = profile_version + 1
      WHERE id = \(bind: id) AND display_name <> \(bind: displayName) RETURNING profile_version
      """
    ).all()
    return try await Self.outcome(rows, id: id, in: uow)
  }

  package func publicProfiles(ids: [String], in uow: UnitOfWork) async throws -> [PublicProfileRecord] {
    let unique = Array(Set(ids))
    guard !unique.isEmpty else { return [] }
    let rows = try await uow.sql.raw(
      "SELECT id, display_name, profile_version FROM users WHERE id IN (\(binds: unique))"
    ).all()
    return try rows.map { row in
      PublicProfileRecord(
        id: try row.decode(column: "id", as: String.self), displayName: try row.decode(column: "display_name", as: String.self),
        profileVersion: try row.decode(column: "profile_version", as: Int64.self))
    }
  }

  /// A conditional update's rows: the new version, or whether the user exists at all.
  static func outcome(_ rows: [any SQLRow], id: String, in uow: UnitOfWork) async throws -> ProfileChange {
    if let row = rows.first { return .changed(version: try row.decode(column: "profile_version", as: Int64.self)) }
    let exists = try await uow.sql.raw("SELECT id FROM users WHERE id = \(bind: id)").first() != nil
    return exists ? .unchanged : .notFound
  }

  package func setPasswordHash(id: String, hash: String, nowMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write("UPDATE users SET password_hash = \(bind: hash), updated_at_ms = \(bind: nowMs) WHERE id = \(bind: id)")
  }

  package func recordLogin(id: String, failedLogins: Int, lockedUntilMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write(
      """
      UPDATE users SET failed_logins = \(bind: failedLogins), locked_until_ms = \(bind: lockedUntilMs) WHERE id = \(bind: id)
      """)
  }

  package func recordFailedLogin(id: String, maxFailures: Int, lockUntilMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    // Both SET expressions read the row's old values, on SQLite and PostgreSQL alike.
    let rows = try await uow.sql.raw(
      """
      UPDATE users SET
        locked_until_ms = CASE WHEN failed_logins + 1 >= \(bind: maxFailures) THEN \(bind: lockUntilMs) ELSE locked_until_ms END,
        failed_logins = CASE WHEN failed_logins + 1 >= \(bind: maxFailures) THEN 0 ELSE failed_logins + 1 END
      WHERE id = \(bind: id) RETURNING locked_until_ms
      """
    ).all()
    return try rows.first?.decode(column: "locked_until_ms", as: Int64.self) == lockUntilMs
  }

  static func users(_ query: SQLQueryString, in uow: UnitOfWork) async throws -> [UserRecord] {
    try await uow.sql.raw(query).all().map { try $0.decode(model: UserRow.self, keyDecodingStrategy: .convertFromSnakeCase).record }
  }
}

/// A `users` row as stored: roles as one comma-separated text.
private struct UserRow: Decodable {
  var id, email, displayName, passwordHash, roles: String
  var failedLogins: Int
  var lockedUntilMs, createdAtMs, updatedAtMs, profileVersion: Int64

  var record: UserRecord {
    UserRecord(
      id: self.id, email: self.email, displayName: self.displayName, passwordHash: self.passwordHash,
      roles: Set(self.roles.split(separator: ",").map(String.init)), failedLogins: self.failedLogins,
      lockedUntilMs: self.lockedUntilMs, createdAtMs: self.createdAtMs, updatedAtMs: self.updatedAtMs,
      profileVersion: self.profileVersion)
  }

  static func encode(_ roles: Set<String>) -> String { roles.sorted().joined(separator: ",") }
}
