import Logging
import NIOCore
import SQLKit
import Storage
import Synchronization

/// A `SQLDatabase` that counts the statements run through it and forwards them to the real
/// one: wrapped around a unit of work's connection, it shows how many queries a repository
/// call costs.
final class CountingSQLDatabase: SQLDatabase {
  let base: any SQLDatabase
  private let statements = Mutex<[String]>([])

  init(_ base: any SQLDatabase) { self.base = base }

  var logger: Logger { self.base.logger }
  var eventLoop: any EventLoop { self.base.eventLoop }
  var version: (any SQLDatabaseReportedVersion)? { self.base.version }
  var dialect: any SQLDialect { self.base.dialect }
  var queryLogLevel: Logger.Level? { self.base.queryLogLevel }

  /// The statements run so far, as SQL text with placeholders.
  var executed: [String] { self.statements.withLock { $0 } }
  var count: Int { self.executed.count }
  func reset() { self.statements.withLock { $0.removeAll() } }

  private func record(_ query: any SQLExpression) {
    var serializer = SQLSerializer(database: self)
    query.serialize(to: &serializer)
    let sql = serializer.sql
    self.statements.withLock { $0.append(sql) }
  }

  func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
    self.record(query)
    return self.base.execute(sql: query, onRow)
  }

  func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
    self.record(query)
    try await self.base.execute(sql: query, onRow)
  }
}

extension UnitOfWork {
  /// The same unit of work, counted.
  func counted() -> (UnitOfWork, CountingSQLDatabase) {
    let counting = CountingSQLDatabase(self.sql)
    return (self.wrapping(counting), counting)
  }
}
