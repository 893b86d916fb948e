import Foundation
import QuizwireProtos
import XCTest

@testable import Gateway

/// Path variables and query parameters into the request message (HttpRule), through the real
/// route table.
final class RequestBinderTests: XCTestCase {
  private func route(_ verb: String, _ path: String) throws -> (Route, [(field: String, value: String)]) {
    guard case .route(let route, let bindings) = try RouteTable().match(verb: verb, path: path) else {
      throw XCTSkip("no route for \(verb) \(path)")
    }
    return (route, bindings)
  }

  func testQueryParametersFillTypedFieldsAndAliases() throws {
    let table = try RouteTable()
    let (route, bindings) = try self.route("GET", "/api/v1/quizzes")
    let request = try RequestBinder(schema: table.schema).bind(
      Quiz_V1_ListQuizzesRequest.self, route: route, body: Data(), bindings: bindings,
      query: [
        ("limit", "5"), ("cursor", "tok"), ("filter", #"title : "café \"x\"""#), ("sort", "create_time desc"),
        ("fields", "id,title"), ("include_total", "true"), ("offset", "3"),
      ])
    XCTAssertEqual(request.pageSize, 5)
    XCTAssertEqual(request.pageToken, "tok")
    XCTAssertEqual(request.filter, #"title : "café \"x\"""#)
    XCTAssertEqual(request.orderBy, "create_time desc")
    XCTAssertEqual(request.readMask.paths, ["id", "title"])
    XCTAssertTrue(request.includeTotal)
    XCTAssertEqual(request.offset, 3)
  }

  func testPathVariablesAndBadValuesAreFieldViolations() throws {
    let table = try RouteTable()
    let binder = RequestBinder(schema: table.schema)
    let (get, bindings) = try self.route("GET", "/api/v1/quizzes/qz_1")
    XCTAssertEqual(try binder.bind(Quiz_V1_GetQuizRequest.self, route: get, body: Data(), bindings: bindings, query: []).id, "qz_1")
    let (list, none) = try self.route("GET", "/api/v1/quizzes")
    do {
      _ = try binder.bind(
        Quiz_V1_ListQuizzesRequest.self, route: list, body: Data(), bindings: none,
        query: [("limit", "many"), ("include_total", "yes"), ("nope", "1")])
      XCTFail("bad values must be refused")
    } catch {
      XCTAssertEqual(error.httpStatus, 400)
      let fields = error.details.flatMap { detail -> [String] in
        if case .badRequest(let violations) = detail { return violations.map(\.field) }
        return []
      }
      XCTAssertEqual(Set(fields), ["limit", "include_total", "nope"])
    }
  }
}
