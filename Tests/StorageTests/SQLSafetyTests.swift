import Foundation
import XCTest

/// Only parameterized SQL: a source scan that fails when a query is built from strings.
final class SQLSafetyTests: XCTestCase {
  func testNoStringBuiltSQLInSources() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let sources = root.appendingPathComponent("Sources")
    let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)!
      .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" && !$0.path.contains("QuizwireProtos") }
    XCTAssertGreaterThan(files.count, 10)
    var scanned = 0
    var problems: [String] = []
    for file in files {
      let text = try String(contentsOf: file, encoding: .utf8)
      let name = file.lastPathComponent
      // SQL lives only where SQLKit or Storage is imported; anywhere else SQL would not run.
      guard text.contains("import SQLKit") || text.contains("import Storage") else { continue }
      scanned += 1
      // unsafeRaw is allowed in one place: the migrator runs DDL constants from the code.
      if text.contains("unsafeRaw:"), name != "Migrator.swift" { problems.append("\(name): uses unsafeRaw") }
      if text.contains("SQLQueryString(stringLiteral") || text.contains("SQLRaw(") { problems.append("\(name): builds SQL from a string") }
      // Inside SQL (.raw(...) / uow.write(...) strings), interpolations must be binds or identifiers.
      for match in text.matches(of: /\\\((\w+):/) {
        let label = String(match.output.1)
        let start: String.Index = text.index(match.range.lowerBound, offsetBy: -200, limitedBy: text.startIndex) ?? text.startIndex
        let context: Substring = text[start..<match.range.lowerBound]
        let markers = [".raw(\"", "write(\"", "SELECT ", "UPDATE ", "DELETE ", "INSERT INTO"]
        let inSQL = markers.contains { context.contains($0) }
        if inSQL, !["bind", "binds", "ident", "idents", "unsafeRaw"].contains(label) {
          problems.append("\(name): interpolation \\(\(label):) in SQL")
        }
      }
      // A plain "\(x)" interpolation inside a SQL string literal.
      for line in text.split(separator: "\n")
      where line.contains("SELECT ") || line.contains("INSERT INTO") || line.contains("UPDATE ") || line.contains("DELETE FROM") || line.contains(" WHERE ") {
        // Every interpolation on the line must be labelled bind(s), ident(s) or unsafeRaw.
        let interpolations = line.components(separatedBy: "\\(").dropFirst()
        let allowed = ["bind:", "binds:", "ident:", "idents:", "unsafeRaw:"]
        if interpolations.contains(where: { part in !allowed.contains { part.hasPrefix($0) } }) {
          problems.append("\(name): string interpolation in SQL: \(line.trimmingCharacters(in: .whitespaces))")
        }
      }
    }
    XCTAssertGreaterThanOrEqual(scanned, 5, "the repositories must be among the scanned files")
    XCTAssertEqual(problems, [], problems.joined(separator: "\n"))
  }
}
