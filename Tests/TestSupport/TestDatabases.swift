import Foundation
import Logging
import SQLKit
import Storage
import XCTest

/// Fresh databases for tests: always a SQLite file, and a PostgreSQL database of its own when
/// `QUIZWIRE_TEST_POSTGRES_URL` is set. Without it the PostgreSQL half is skipped with a
/// printed reason — or fails, under `QUIZWIRE_REQUIRE_ALL=1` (CI).
public enum TestDatabases {
  public static let logger = Logger(label: "test.db") { _ in SwiftLogNoOpLogHandler() }

  public static var postgresURL: String? {
    ProcessInfo.processInfo.environment["QUIZWIRE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
  }

  public static var requireAll: Bool { ProcessInfo.processInfo.environment["QUIZWIRE_REQUIRE_ALL"] == "1" }

  public static func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "quizwire-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  /// Runs `body` once per available dialect, each on an empty database.
  public static func each(file: StaticString = #filePath, line: UInt = #line, _ body: (Database) async throws -> Void) async throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let sqlite = try Database(.sqlite(path: dir + "/test.sqlite"), logger: logger)
    do {
      try await body(sqlite)
    } catch {
      try? await sqlite.shutdown()
      throw error
    }
    try await sqlite.shutdown()

    guard let url = postgresURL else {
      if requireAll {
        XCTFail("QUIZWIRE_TEST_POSTGRES_URL is not set but QUIZWIRE_REQUIRE_ALL=1: PostgreSQL tests must run", file: file, line: line)
      } else {
        print("note: PostgreSQL half skipped: set QUIZWIRE_TEST_POSTGRES_URL to run it")
      }
      return
    }
    try await withPostgres(url) { try await body($0) }
  }

  /// A PostgreSQL database created for this test and dropped after it.
  public static func withPostgres(_ url: String, poolSize: Int = 4, _ body: (Database) async throws -> Void) async throws {
    let name = "qw_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    let admin = try Database(.postgres(url: url, poolSize: 1), logger: logger)
    try await admin.read { uow in try await uow.sql.raw("CREATE DATABASE \(ident: String(name))").run() }
    guard var parts = URLComponents(string: url) else { throw StorageError.cannotOpen("bad URL") }
    parts.path = "/" + name
    let db = try Database(.postgres(url: parts.string!, poolSize: poolSize), logger: logger)
    var failure: (any Error)?
    do { try await body(db) } catch { failure = error }
    try? await db.shutdown()
    try? await admin.read { uow in try await uow.sql.raw("DROP DATABASE IF EXISTS \(ident: String(name)) WITH (FORCE)").run() }
    try? await admin.shutdown()
    if let failure { throw failure }
  }
}
