import SQLKit
import Storage

/// A stored user. `roles` is a set of "user", "author", "admin".
public struct UserRecord: Sendable, Hashable {
  public var id: String
  public var email: String
  public var displayName: String
  public var passwordHash: String
  public var roles: Set<String>
  public var failedLogins: Int
  public var lockedUntilMs: Int64
  public var createdAtMs: Int64
  public var updatedAtMs: Int64
}

public protocol UserRepository: Sendable {
  func insert(_ user: UserRecord, in uow: UnitOfWork) async throws
  func find(id: String, in uow: UnitOfWork) async throws -> UserRecord?
  func find(email: String, in uow: UnitOfWork) async throws -> UserRecord?
  /// Users ordered by (created_at, id), starting after `after` (keyset pagination).
  func list(after: (createdAtMs: Int64, id: String)?, limit: Int, in uow: UnitOfWork) async throws -> [UserRecord]
  func setRoles(id: String, roles: Set<String>, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool
  func setPasswordHash(id: String, hash: String, nowMs: Int64, in uow: UnitOfWork) async throws
  func recordLogin(id: String, failedLogins: Int, lockedUntilMs: Int64, in uow: UnitOfWork) async throws
  /// Counts one failed sign-in in a single statement; at `maxFailures` the account locks
  /// until `lockUntilMs` and the count restarts. Returns whether this failure locked it.
  func recordFailedLogin(id: String, maxFailures: Int, lockUntilMs: Int64, in uow: UnitOfWork) async throws -> Bool
}

/// The one implementation, on SQLKit; runs on SQLite and PostgreSQL alike.
public struct SQLUserRepository: UserRepository {
  public init() {}

  public func insert(_ u: UserRecord, in uow: UnitOfWork) async throws {
    try await uow.write("""
      INSERT INTO users (id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms)
      VALUES (\(bind: u.id), \(bind: u.email), \(bind: u.displayName), \(bind: u.passwordHash), \(bind: Self.encode(u.roles)),
              \(bind: u.failedLogins), \(bind: u.lockedUntilMs), \(bind: u.createdAtMs), \(bind: u.updatedAtMs))
      """)
  }

  public func find(id: String, in uow: UnitOfWork) async throws -> UserRecord? {
    try await uow.sql.raw("SELECT id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms FROM users WHERE id = \(bind: id)").all().first.map(Self.decode)
  }

  public func find(email: String, in uow: UnitOfWork) async throws -> UserRecord? {
    try await uow.sql.raw("SELECT id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms FROM users WHERE email = \(bind: email)").all().first.map(Self.decode)
  }

  public func list(after: (createdAtMs: Int64, id: String)?, limit: Int, in uow: UnitOfWork) async throws -> [UserRecord] {
    let rows: [any SQLRow]
    if let after {
      rows = try await uow.sql.raw("""
        SELECT id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms FROM users
        WHERE created_at_ms > \(bind: after.createdAtMs) OR (created_at_ms = \(bind: after.createdAtMs) AND id > \(bind: after.id))
        ORDER BY created_at_ms, id LIMIT \(bind: limit)
        """).all()
    } else {
      rows = try await uow.sql.raw("SELECT id, email, display_name, password_hash, roles, failed_logins, locked_until_ms, created_at_ms, updated_at_ms FROM users ORDER BY created_at_ms, id LIMIT \(bind: limit)").all()
    }
    return try rows.map(Self.decode)
  }

  public func setRoles(id: String, roles: Set<String>, nowMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    let rows = try await uow.sql.raw("""
      UPDATE users SET roles = \(bind: Self.encode(roles)), updated_at_ms = \(bind: nowMs) WHERE id = \(bind: id) RETURNING id
      """).all()
    return !rows.isEmpty
  }

  public func setPasswordHash(id: String, hash: String, nowMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write("UPDATE users SET password_hash = \(bind: hash), updated_at_ms = \(bind: nowMs) WHERE id = \(bind: id)")
  }

  public func recordLogin(id: String, failedLogins: Int, lockedUntilMs: Int64, in uow: UnitOfWork) async throws {
    try await uow.write("""
      UPDATE users SET failed_logins = \(bind: failedLogins), locked_until_ms = \(bind: lockedUntilMs) WHERE id = \(bind: id)
      """)
  }

  public func recordFailedLogin(id: String, maxFailures: Int, lockUntilMs: Int64, in uow: UnitOfWork) async throws -> Bool {
    // Both SET expressions read the row's old values, on SQLite and PostgreSQL alike.
    let rows = try await uow.sql.raw("""
      UPDATE users SET
        locked_until_ms = CASE WHEN failed_logins + 1 >= \(bind: maxFailures) THEN \(bind: lockUntilMs) ELSE locked_until_ms END,
        failed_logins = CASE WHEN failed_logins + 1 >= \(bind: maxFailures) THEN 0 ELSE failed_logins + 1 END
      WHERE id = \(bind: id) RETURNING locked_until_ms
      """).all()
    return try rows.first?.decode(column: "locked_until_ms", as: Int64.self) == lockUntilMs
  }

  static func encode(_ roles: Set<String>) -> String { roles.sorted().joined(separator: ",") }

  static func decode(_ row: any SQLRow) throws -> UserRecord {
    UserRecord(
      id: try row.decode(column: "id", as: String.self),
      email: try row.decode(column: "email", as: String.self),
      displayName: try row.decode(column: "display_name", as: String.self),
      passwordHash: try row.decode(column: "password_hash", as: String.self),
      roles: Set(try row.decode(column: "roles", as: String.self).split(separator: ",").map(String.init)),
      failedLogins: try row.decode(column: "failed_logins", as: Int.self),
      lockedUntilMs: try row.decode(column: "locked_until_ms", as: Int64.self),
      createdAtMs: try row.decode(column: "created_at_ms", as: Int64.self),
      updatedAtMs: try row.decode(column: "updated_at_ms", as: Int64.self))
  }
}
