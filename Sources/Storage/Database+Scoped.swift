import Logging

extension Database {
  /// Opens a database for the duration of `body` and closes it on every path (one-shot
  /// commands: migrate, keys). Services let their host's lifecycle close it instead.
  public static func using<T: Sendable>(
    _ location: DatabaseLocation, logger: Logger, _ body: (Database) async throws -> T
  ) async throws -> T {
    let db = try Database(location, logger: logger)
    let result: T
    do {
      result = try await body(db)
    } catch {
      try? await db.shutdown()
      throw error
    }
    try await db.shutdown()
    return result
  }
}
