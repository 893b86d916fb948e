import Foundation

import QuizwireProtos
import TestSupport
import XCTest

@testable import Gateway

/// `/openapi.json` is derived from the route table: every route appears with its success
/// status and the status table's error answers, every `$ref` resolves, the JSON follows
/// protobuf's canonical mapping — and an outside validator (PyPI's openapi-spec-validator)
/// accepts the live document as OpenAPI 3.1.
final class OpenAPITests: XCTestCase {
  private func document() throws -> [String: Any] {
    let data = try OpenAPIDocument.build(routes: RouteTable(), descriptorSet: MethodCatalogue.descriptorSet)
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
  }

  func testEveryRouteIsListedWithItsSuccessStatusAndErrors() throws {
    let table = try RouteTable()
    let doc = try self.document()
    XCTAssertEqual(doc["openapi"] as? String, "3.1.0")
    let paths = try XCTUnwrap(doc["paths"] as? [String: [String: Any]])
    let operations = paths.values.reduce(0) { $0 + $1.count }
    // The unary table, the server streams, and the Play socket with its ticket.
    XCTAssertEqual(operations, table.routes.count + StreamRoute.all.count + 2, "one operation per route, nothing more")
    let rowStatuses = Set(OpenAPIDocument.statusRows.map(\.httpStatus))
    XCTAssertEqual(rowStatuses, [400, 401, 403, 404, 409, 422, 429, 499, 500, 501, 503, 504])
    let documented = DocumentedPaths(table.routes)
    for route in table.routes {
      let name = "\(route.verb) \(route.template)"
      let operation = try XCTUnwrap(paths[documented.path(for: route)]?[route.verb.lowercased()] as? [String: Any], name)
      let responses = try XCTUnwrap(operation["responses"] as? [String: Any], name)
      let success = try XCTUnwrap(responses[String(route.successStatus)] as? [String: Any], "\(name): \(route.successStatus)")
      XCTAssertEqual(success["content"] == nil, route.successStatus == 204, "\(name): a 204 has no body, others the envelope")
      if route.successStatus == 201, route.location != nil {
        XCTAssertNotNil((success["headers"] as? [String: Any])?["Location"], name)
      }
      for status in rowStatuses {
        XCTAssertEqual((responses[String(status)] as? [String: String])?["$ref"], "#/components/responses/Error\(status)", name)
      }
      let parameters = operation["parameters"] as? [[String: Any]] ?? []
      let pathParameters = parameters.filter { $0["in"] as? String == "path" }.compactMap { $0["name"] as? String }
      XCTAssertEqual(pathParameters.count, route.template.variables.count, name)
      XCTAssertEqual(pathParameters, documented.names(for: route), name)
      if route.body == .whole { XCTAssertFalse(parameters.contains { $0["in"] as? String == "query" }, "\(name): body \"*\" takes no query") }
      XCTAssertEqual(operation["requestBody"] != nil, route.body != .none, name)
    }
    // One path item per shape (OpenAPI: same-shaped templates are the same path), and
    // variable names without dots: `/quizzes/{id}` holds GetQuiz and UpdateQuiz alike.
    let shapes = paths.keys.map { $0.replacingOccurrences(of: #"\{[^}]*\}"#, with: "*", options: .regularExpression) }
    XCTAssertEqual(Set(shapes).count, shapes.count, "\(paths.keys.sorted())")
    XCTAssertFalse(paths.keys.contains { $0.contains(".") }, "\(paths.keys.sorted())")
    XCTAssertEqual(Set((paths["/api/v1/quizzes/{id}"] ?? [:]).keys), ["get", "patch", "delete"])
    try self.assertHTTPLayer(doc, paths: paths)
    // The shared error responses carry the envelope and the headers their rows ask for.
    let responses = try XCTUnwrap((doc["components"] as? [String: Any])?["responses"] as? [String: [String: Any]])
    XCTAssertNotNil((responses["Error401"]?["headers"] as? [String: Any])?["WWW-Authenticate"])
    XCTAssertNotNil((responses["Error429"]?["headers"] as? [String: Any])?["Retry-After"])
    let errorSchema = ((responses["Error404"]?["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"]
    XCTAssertEqual((errorSchema as? [String: String])?["$ref"], "#/components/schemas/ErrorEnvelope")
    // Lists take the binder's friendlier names.
    let list = try XCTUnwrap(paths["/api/v1/quizzes"]?["get"] as? [String: Any])
    let queryNames = Set((list["parameters"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String })
    XCTAssertTrue(queryNames.isSuperset(of: ["limit", "cursor"]), "\(queryNames)")
    XCTAssertFalse(queryNames.contains("pageSize"), "\(queryNames)")
  }

  /// Every header the gateway sends is described and attached where it is sent; the policy
  /// answers (304, 412, 413/415, 429, 431) are listed where they apply; streams are documented.
  private func assertHTTPLayer(_ doc: [String: Any], paths: [String: [String: Any]]) throws {
    let components = try XCTUnwrap(doc["components"] as? [String: Any])
    let headers = try XCTUnwrap(components["headers"] as? [String: Any])
    for name in [
      "X-Request-Id", "ETag", "Location", "Link", "RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining",
      "X-RateLimit-Reset", "Retry-After", "Allow", "WWW-Authenticate", "Cache-Control",
    ] {
      XCTAssertNotNil(headers[name], name)
    }
    let parameters = try XCTUnwrap(components["parameters"] as? [String: [String: Any]])
    XCTAssertEqual(parameters["If-None-Match"]?["in"] as? String, "header")
    XCTAssertEqual(parameters["If-Match"]?["in"] as? String, "header")
    func operation(_ verb: String, _ path: String) throws -> (parameters: [String], responses: [String: Any]) {
      let op = try XCTUnwrap(paths[path]?[verb] as? [String: Any], "\(verb) \(path)")
      let names = (op["parameters"] as? [[String: Any]] ?? []).compactMap { ($0["name"] ?? $0["$ref"]) as? String }
      return (names, op["responses"] as? [String: Any] ?? [:])
    }
    func successHeaders(_ responses: [String: Any], _ status: String) -> Set<String> {
      Set(((responses[status] as? [String: Any])?["headers"] as? [String: Any] ?? [:]).keys)
    }
    let read = try operation("get", "/api/v1/quizzes/{id}")
    XCTAssertTrue(read.parameters.contains("#/components/parameters/If-None-Match"))
    XCTAssertEqual((read.responses["304"] as? [String: String])?["$ref"], "#/components/responses/NotModified")
    XCTAssertTrue(successHeaders(read.responses, "200").isSuperset(of: ["ETag", "Cache-Control", "X-Request-Id", "RateLimit", "X-RateLimit-Remaining"]))
    XCTAssertNotNil(read.responses["431"])
    XCTAssertNil(read.responses["413"], "no body, no 413")
    let update = try operation("patch", "/api/v1/quizzes/{id}")
    XCTAssertTrue(update.parameters.contains("#/components/parameters/If-Match"))
    XCTAssertEqual((update.responses["412"] as? [String: String])?["$ref"], "#/components/responses/Error412")
    XCTAssertNotNil(update.responses["413"])
    XCTAssertNotNil(update.responses["415"])
    XCTAssertNil(try operation("get", "/api/v1/me").responses["412"], "no If-Match, no 412")
    XCTAssertTrue(successHeaders(try operation("get", "/api/v1/quizzes").responses, "200").contains("Link"))
    XCTAssertTrue(successHeaders(try operation("post", "/api/v1/quizzes").responses, "201").contains("Location"))
    let responses = try XCTUnwrap(components["responses"] as? [String: [String: Any]])
    XCTAssertNotNil((responses["Error429"]?["headers"] as? [String: Any])?["RateLimit-Policy"])
    XCTAssertNotNil(responses["Error431"])
    // Idempotency-Key where the gateway honours it: creating POSTs without credentials in the answer.
    let create = try operation("post", "/api/v1/quizzes")
    XCTAssertTrue(create.parameters.contains("#/components/parameters/Idempotency-Key"))
    XCTAssertTrue(successHeaders(create.responses, "201").contains("Idempotent-Replayed"))
    for (verb, path) in [("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/register"), ("post", "/api/v1/me/api-keys"), ("patch", "/api/v1/quizzes/{id}")]
    {
      XCTAssertFalse(try operation(verb, path).parameters.contains("#/components/parameters/Idempotency-Key"), "\(verb) \(path)")
    }
    // The Play socket (101 after the handshake, 426 without one) and its ticket (201).
    let socket = try operation("get", PlayRoutes.socket)
    XCTAssertEqual(Set(socket.responses.keys).isSuperset(of: ["101", "426"]), true, "\(socket.responses.keys)")
    XCTAssertTrue(socket.parameters.contains("ticket"))
    XCTAssertNotNil(try operation("post", PlayRoutes.ticket).responses["201"])
    // The leaderboard stream: SSE or NDJSON, resumable with Last-Event-ID.
    let stream = try operation("get", "/api/v1/quizzes/{quiz_id}/leaderboard/stream")
    XCTAssertTrue(stream.parameters.contains("Last-Event-ID"))
    let content = ((stream.responses["200"] as? [String: Any])?["content"] as? [String: Any]) ?? [:]
    XCTAssertEqual(Set(content.keys), ["text/event-stream", "application/x-ndjson"])
  }

  func testEveryReferencedSchemaExistsAndFollowsCanonicalJSON() throws {
    let doc = try self.document()
    var refs: Set<String> = []
    func walk(_ value: Any) {
      if let object = value as? [String: Any] {
        if let ref = object["$ref"] as? String { refs.insert(ref) }
        object.values.forEach(walk)
      } else if let array = value as? [Any] {
        array.forEach(walk)
      }
    }
    walk(doc)
    XCTAssertFalse(refs.isEmpty)
    for ref in refs {
      XCTAssertTrue(ref.hasPrefix("#/"), ref)
      var node: Any? = doc
      for part in ref.dropFirst(2).split(separator: "/") { node = (node as? [String: Any])?[String(part)] }
      XCTAssertNotNil(node as? [String: Any], "\(ref) does not resolve")
    }
    let schemas = try XCTUnwrap((doc["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]])
    // Every message a route answers has its component.
    for route in try RouteTable().routes where route.successStatus != 204 {
      let name = route.method.response.protoMessageName
      let fields = try RouteTable().schema.fields(of: name) ?? []
      let isList = fields.filter(\.isRepeated).count == 1 && (fields.contains { $0.name == "next_page_token" } || fields.count == 1)
      if !isList { XCTAssertNotNil(schemas[name], name) }
    }
    // lowerCamelCase names, RFC 3339 times, enums by name, repeated as arrays.
    let quiz = try XCTUnwrap(schemas["quiz.v1.Quiz"]?["properties"] as? [String: [String: Any]])
    XCTAssertEqual(quiz["createTime"]?["format"] as? String, "date-time")
    XCTAssertNil(quiz["create_time"])
    XCTAssertEqual(quiz["questions"]?["type"] as? String, "array")
    let kind = try XCTUnwrap(schemas["quiz.v1.QuestionKind"])
    XCTAssertTrue((kind["enum"] as? [String] ?? []).contains("QUESTION_KIND_SINGLE_CHOICE"), "\(kind)")
    // int64 fields are strings.
    let int64 = schemas.values.flatMap { ($0["properties"] as? [String: [String: Any]] ?? [:]).values }.filter { $0["format"] as? String == "int64" }
    XCTAssertTrue(int64.allSatisfy { $0["type"] as? String == "string" || ($0["minimum"] as? Int) == 0 }, "\(int64)")
  }

  func testLiveDocumentPassesOpenAPISpecValidatorAndDocsRenderIt() async throws {
    guard try ChildCommand.succeeds("python3 -c 'import openapi_spec_validator'") else {
      if TestDatabases.requireAll { return XCTFail("python3 with openapi-spec-validator is required (pip install openapi-spec-validator)") }
      throw XCTSkip("python3 with openapi-spec-validator not found")
    }
    let h = try await GatewayHarness.start()
    do {
      let spec = try await h.request("GET", "/openapi.json", headers: ["X-Request-Id": "openapi-test-1"])
      XCTAssertEqual(spec.status, 200)
      XCTAssertEqual(spec.header("X-Request-Id"), "openapi-test-1")
      XCTAssertEqual(spec.header("Content-Type"), "application/json")
      XCTAssertEqual(spec.json?["openapi"] as? String, "3.1.0")
      let file = FileManager.default.temporaryDirectory.appendingPathComponent("quizwire-openapi-\(UUID().uuidString).json")
      try spec.body.write(to: file)
      defer { try? FileManager.default.removeItem(at: file) }
      let result = try ChildCommand.run(["sh", "-c", "python3 -m openapi_spec_validator --schema 3.1 '\(file.path)' 2>&1"], timeout: 120)
      XCTAssertEqual(result.status, 0, result.stdout)
      XCTAssertTrue(result.stdout.contains("OK"), result.stdout)

      let docs = try await h.request("GET", "/docs")
      XCTAssertEqual(docs.status, 200)
      XCTAssertNotNil(docs.header("X-Request-Id"))
      XCTAssertEqual(docs.header("Content-Type"), "text/html; charset=utf-8")
      let html = String(decoding: docs.body, as: UTF8.self)
      XCTAssertTrue(html.contains("fetch(\"/openapi.json\")"))
      XCTAssertFalse(html.contains("https://"), "no CDN: the page loads nothing from elsewhere")

      // The document's shape of a list matches a real answer: `data` is the array.
      let quizzes = try await h.request("GET", "/api/v1/quizzes?limit=5")
      XCTAssertEqual(quizzes.status, 200)
      XCTAssertNotNil(quizzes.list)
      let paths = spec.json?["paths"] as? [String: [String: Any]]
      let listOK = ((paths?["/api/v1/quizzes"]?["get"] as? [String: Any])?["responses"] as? [String: Any])?["200"] as? [String: Any]
      let envelope = ((listOK?["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any]
      XCTAssertEqual(((envelope?["properties"] as? [String: Any])?["data"] as? [String: Any])?["type"] as? String, "array")
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }
}
