import Storage

/// The auth service's schema, forward-only. Times are epoch milliseconds (BIGINT) so the
/// same SQL and comparisons work on both databases; secrets are stored as SHA-256 hex.
package enum AuthMigrations {
  package static let service = "auth"

  package static var all: [Migration] {
    [
      Migration(version: 1, name: "users, tokens, keys, clients") { dialect in
        let blob = dialect == .postgres ? "BYTEA" : "BLOB"
        return [
          """
          CREATE TABLE users (
            id TEXT PRIMARY KEY, email TEXT NOT NULL, display_name TEXT NOT NULL, password_hash TEXT NOT NULL,
            roles TEXT NOT NULL, failed_logins BIGINT NOT NULL DEFAULT 0, locked_until_ms BIGINT NOT NULL DEFAULT 0,
            created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL)
          """,
          "CREATE UNIQUE INDEX users_email ON users (email)",
          "CREATE INDEX users_created ON users (created_at_ms, id)",
          """
          CREATE TABLE refresh_tokens (
            id TEXT PRIMARY KEY, token_hash TEXT NOT NULL, family_id TEXT NOT NULL,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE, client_id TEXT, scope TEXT NOT NULL,
            expires_at_ms BIGINT NOT NULL, used_at_ms BIGINT, revoked_at_ms BIGINT, created_at_ms BIGINT NOT NULL)
          """,
          "CREATE UNIQUE INDEX refresh_tokens_hash ON refresh_tokens (token_hash)",
          "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id)",
          "CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id)",
          """
          CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY, alg TEXT NOT NULL, sealed_private_key \(blob) NOT NULL, public_jwk TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL, retired_at_ms BIGINT)
          """,
          "CREATE INDEX signing_keys_created ON signing_keys (created_at_ms)",
          """
          CREATE TABLE api_keys (
            id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name TEXT NOT NULL, scopes TEXT NOT NULL, rate_limit_per_second DOUBLE PRECISION NOT NULL,
            created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT, revoked_at_ms BIGINT, last_used_at_ms BIGINT)
          """,
          "CREATE INDEX api_keys_owner ON api_keys (owner_id)",
          """
          CREATE TABLE oauth_clients (
            client_id TEXT PRIMARY KEY, secret_hash TEXT, name TEXT NOT NULL, redirect_uris TEXT NOT NULL,
            grant_types TEXT NOT NULL, scopes TEXT NOT NULL, created_at_ms BIGINT NOT NULL)
          """,
          """
          CREATE TABLE auth_codes (
            code_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE, redirect_uri TEXT NOT NULL,
            code_challenge TEXT NOT NULL, scope TEXT NOT NULL, expires_at_ms BIGINT NOT NULL, used_at_ms BIGINT,
            family_id TEXT, created_at_ms BIGINT NOT NULL)
          """,
        ]
      },
      // Internal clients (the suite's own services): only their client-credentials tokens
      // are service principals. A defaulted column: older code keeps working beside it.
      Migration(version: 2, name: "oauth_clients.internal", expandOnly: true) { dialect in
        [
          dialect == .postgres
            ? "ALTER TABLE oauth_clients ADD COLUMN internal BOOLEAN NOT NULL DEFAULT false"
            : "ALTER TABLE oauth_clients ADD COLUMN internal INTEGER NOT NULL DEFAULT 0"
        ]
      },
      // The events' outbox (user.registered, user.renamed, user.roles_changed).
      Outbox.migration(version: 3),
      // The job queue (purging expired refresh tokens and authorization codes).
      JobQueue.migration(version: 4),
      // The per-user version of the public profile: the key version of the user.* events.
      Migration(version: 5, name: "users.profile_version", expandOnly: true) { _ in
        ["ALTER TABLE users ADD COLUMN profile_version BIGINT NOT NULL DEFAULT 1"]
      },
      // The feed of the outbox (topic "users"): acknowledgements and purge horizons.
      OutboxRetention.migration(version: 6),
    ]
  }
}
