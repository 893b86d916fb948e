import Foundation
import SQLKit
import Storage

/// One record's identity: nobody can reach another caller's record, and a key is scoped to the
/// route it was sent to.
public struct IdempotencyRecordID: Sendable, Hashable {
  public var caller: String
  public var method: String
  public var path: String
  public var key: String

  public init(caller: String, method: String, path: String, key: String) {
    self.caller = caller
    self.method = method
    self.path = path
    self.key = key
  }
}

/// An answer as kept for replay: status, the headers that describe the body, the body.
public struct StoredResponse: Sendable, Hashable {
  public var status: Int
  /// `Location`, `Content-Type`, `ETag` (names as sent).
  public var headers: [String: String]
  public var body: Data

  public init(status: Int, headers: [String: String], body: Data) {
    self.status = status
    self.headers = headers
    self.body = body
  }
}

/// What a claim found.
public enum IdempotencyClaim: Sendable, Hashable {
  /// This request owns the key: run it, then `complete` or `release` with `token`.
  case claimed(token: String)
  /// The first request's answer.
  case replay(StoredResponse)
  case mismatch
  case inFlight
}

extension GatewayStore {
  /// Claims `id` for a request with `fingerprint`, or reports what holds it. Records past
  /// retention and claims past their lease are removed first, so neither blocks the key.
  public func claim(
    _ id: IdempotencyRecordID, fingerprint: String, now: Date = Date(), lease: Duration = IdempotencyPolicy.lease,
    retention: Duration = IdempotencyPolicy.retention
  ) async throws -> IdempotencyClaim {
    let at = Self.milliseconds(now)
    let cutoff = at - Self.milliseconds(retention)
    let token = UUID().uuidString
    return try await self.database.transaction { uow in
      try await uow.write(
        "DELETE FROM gateway_idempotency WHERE " + Self.matches(id)
          + " AND (created_at <= \(bind: cutoff) OR (state = 'running' AND lease_until <= \(bind: at)))")
      let inserted = try await uow.sql.raw(
        """
        INSERT INTO gateway_idempotency (caller, method, path, idem_key, fingerprint, state, token, created_at, lease_until)
        VALUES (\(bind: id.caller), \(bind: id.method), \(bind: id.path), \(bind: id.key), \(bind: fingerprint), 'running', \(bind: token), \(bind: at), \(bind: at + Self.milliseconds(lease)))
        ON CONFLICT (caller, method, path, idem_key) DO NOTHING RETURNING token
        """
      ).all()
      if !inserted.isEmpty { return .claimed(token: token) }
      // Lost to a claim that is alive (the deletes above ran first): read what holds it. On
      // PostgreSQL the insert waited for that claim's transaction, so the row is committed.
      guard
        let row = try await uow.sql.raw("SELECT fingerprint, state, status, headers, body FROM gateway_idempotency WHERE " + Self.matches(id))
          .first()
      else { throw IdempotencyStoreError.vanished }
      let done = try row.decode(column: "state", as: String.self) == "done"
      switch IdempotencyPolicy.conflict(fingerprint: fingerprint, storedFingerprint: try row.decode(column: "fingerprint", as: String.self), done: done) {
      case .mismatch: return .mismatch
      case .inFlight: return .inFlight
      case .replay:
        let headersText = try row.decode(column: "headers", as: String.self)
        let headers = (try? JSONDecoder().decode([String: String].self, from: Data(headersText.utf8))) ?? [:]
        return .replay(
          StoredResponse(
            status: Int(try row.decode(column: "status", as: Int64.self)), headers: headers,
            body: Data(try row.decode(column: "body", as: String.self).utf8)))
      }
    }
  }

  /// Keeps `response` as the answer of the claim `token` holds. A claim taken over after its
  /// lease (this request outlived it) is not overwritten.
  public func complete(_ id: IdempotencyRecordID, token: String, response: StoredResponse) async throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    let headers = String(decoding: try encoder.encode(response.headers), as: UTF8.self)
    let body = String(decoding: response.body, as: UTF8.self)
    try await self.database.transaction { uow in
      try await uow.write(
        "UPDATE gateway_idempotency SET state = 'done', status = \(bind: Int64(response.status)), headers = \(bind: headers), body = \(bind: body)"
          + " WHERE " + Self.matches(id) + " AND token = \(bind: token)")
    }
  }

  /// Frees the key after an answer that is not kept (5xx, 429 …): the client may retry it.
  public func release(_ id: IdempotencyRecordID, token: String) async throws {
    try await self.database.transaction { uow in
      try await uow.write("DELETE FROM gateway_idempotency WHERE " + Self.matches(id) + " AND token = \(bind: token)")
    }
  }

  private static func matches(_ id: IdempotencyRecordID) -> SQLQueryString {
    "caller = \(bind: id.caller) AND method = \(bind: id.method) AND path = \(bind: id.path) AND idem_key = \(bind: id.key)"
  }
}

/// A record disappeared between the failed insert and the read (expired in that instant):
/// the client retries.
public enum IdempotencyStoreError: Error, Sendable, CustomStringConvertible {
  case vanished
  public var description: String { "the idempotency record changed while it was read; retry" }
}
