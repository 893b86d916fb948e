import Foundation
import QuizwireProtos
import SwiftProtobuf
import XCTest

@testable import Gateway

/// The route table as the gateway reads it from the generated descriptor set.
final class RouteTableTests: XCTestCase {
  /// Every route issue 15's first slice asks for, with its method and success status.
  static let expected: [(String, String, String, Int)] = [
    ("POST", "/api/v1/auth/register", "auth.v1.AuthService/Register", 201),
    ("POST", "/api/v1/auth/login", "auth.v1.AuthService/Login", 200),
    ("POST", "/api/v1/auth/refresh", "auth.v1.AuthService/Refresh", 200),
    ("POST", "/api/v1/auth/logout", "auth.v1.AuthService/Logout", 204),
    ("GET", "/api/v1/me", "auth.v1.AuthService/GetMe", 200),
    ("PATCH", "/api/v1/me", "auth.v1.AuthService/UpdateProfile", 200),
    ("POST", "/api/v1/me/api-keys", "auth.v1.AuthService/CreateAPIKey", 201),
    ("GET", "/api/v1/me/api-keys", "auth.v1.AuthService/ListAPIKeys", 200),
    ("DELETE", "/api/v1/me/api-keys/{id}", "auth.v1.AuthService/RevokeAPIKey", 204),
    ("POST", "/api/v1/me/api-keys/{id}/rotate", "auth.v1.AuthService/RotateAPIKey", 200),
    ("POST", "/api/v1/quizzes", "quiz.v1.QuizService/CreateQuiz", 201),
    ("GET", "/api/v1/quizzes", "quiz.v1.QuizService/ListQuizzes", 200),
    ("GET", "/api/v1/quizzes/{id}", "quiz.v1.QuizService/GetQuiz", 200),
    ("PATCH", "/api/v1/quizzes/{quiz.id}", "quiz.v1.QuizService/UpdateQuiz", 200),
    ("DELETE", "/api/v1/quizzes/{id}", "quiz.v1.QuizService/DeleteQuiz", 204),
    ("POST", "/api/v1/quizzes/{id}/publish", "quiz.v1.QuizService/PublishQuiz", 200),
    ("POST", "/api/v1/quizzes/{id}/unpublish", "quiz.v1.QuizService/UnpublishQuiz", 200),
    ("POST", "/api/v1/quizzes/{id}/archive", "quiz.v1.QuizService/ArchiveQuiz", 200),
    ("POST", "/api/v1/quizzes/{quiz_id}/questions", "quiz.v1.QuizService/AddQuestion", 200),
    ("PATCH", "/api/v1/quizzes/{quiz_id}/questions/{question.id}", "quiz.v1.QuizService/UpdateQuestion", 200),
    ("DELETE", "/api/v1/quizzes/{quiz_id}/questions/{question_id}", "quiz.v1.QuizService/RemoveQuestion", 204),
    ("POST", "/api/v1/quizzes/{quiz_id}/attempts", "scoring.v1.ScoringService/StartAttempt", 201),
    ("GET", "/api/v1/quizzes/{quiz_id}/attempts", "scoring.v1.ScoringService/ListAttempts", 200),
    ("GET", "/api/v1/attempts/{id}", "scoring.v1.ScoringService/GetAttempt", 200),
    ("GET", "/api/v1/quizzes/{quiz_id}/leaderboard", "scoring.v1.ScoringService/GetLeaderboard", 200),
  ]

  func testEveryAnnotatedRouteIsReadFromTheDescriptorSet() throws {
    let table = try RouteTable()
    let actual = Set(table.routes.map { "\($0.verb) \($0.template) \($0.method.fullName) \($0.successStatus)" })
    let wanted = Set(Self.expected.map { "\($0.0) \($0.1) \($0.2) \($0.3)" })
    XCTAssertEqual(actual.subtracting(wanted), [], "routes nobody expects")
    XCTAssertEqual(wanted.subtracting(actual), [], "routes missing")
    XCTAssertEqual(table.routes.count, Self.expected.count, "a route declared twice")
    let shapes = table.routes.map { $0.verb + " " + $0.template.shape }
    XCTAssertEqual(Set(shapes).count, shapes.count)
  }

  func testBodiesAndLocationsFollowTheRules() throws {
    let table = try RouteTable()
    func route(_ verb: String, _ path: String) throws -> Route { try XCTUnwrap(table.routes.first { $0.verb == verb && "\($0.template)" == path }) }
    XCTAssertEqual(try route("POST", "/api/v1/quizzes").body, .field("quiz"))
    XCTAssertEqual(try route("POST", "/api/v1/auth/login").body, .whole)
    XCTAssertEqual(try route("GET", "/api/v1/quizzes").body, .none)
    XCTAssertEqual(try route("POST", "/api/v1/quizzes").location?.description, "/api/v1/quizzes/{id}")
    XCTAssertEqual(try route("POST", "/api/v1/quizzes/{quiz_id}/attempts").location?.description, "/api/v1/attempts/{id}")
    XCTAssertNil(try route("POST", "/api/v1/auth/register").location)
    XCTAssertTrue(try route("GET", "/api/v1/quizzes/{id}").isIdempotent)
    XCTAssertFalse(try route("POST", "/api/v1/quizzes").isIdempotent)
  }

  func testMatchingBindsVariablesAndAnswers405And404() throws {
    let table = try RouteTable()
    guard case .route(let route, let bindings) = table.match(verb: "PATCH", path: "/api/v1/quizzes/q%201/questions/x") else {
      return XCTFail("no match")
    }
    XCTAssertEqual(route.method.method, "UpdateQuestion")
    XCTAssertEqual(bindings.map { "\($0.field)=\($0.value)" }, ["quiz_id=q 1", "question.id=x"])
    guard case .methodNotAllowed(let allow) = table.match(verb: "PUT", path: "/api/v1/quizzes") else { return XCTFail("not 405") }
    XCTAssertEqual(allow, ["GET", "POST"])
    guard case .notFound = table.match(verb: "GET", path: "/api/v1/nothing") else { return XCTFail("not 404") }
    guard case .notFound = table.match(verb: "GET", path: "/api/v1/quizzes/") else { return XCTFail("empty variable matched") }
  }

  func testADuplicateRouteIsRefused() throws {
    var set = try Google_Protobuf_FileDescriptorSet(serializedBytes: MethodCatalogue.descriptorSet, extensions: Google_Api_Annotations_Extensions)
    // Give Login the same verb and shape as Register.
    let file = try XCTUnwrap(set.file.firstIndex { $0.name == "auth/v1/auth.proto" })
    let service = try XCTUnwrap(set.file[file].service.firstIndex { $0.name == "AuthService" })
    let login = try XCTUnwrap(set.file[file].service[service].method.firstIndex { $0.name == "Login" })
    set.file[file].service[service].method[login].options.Google_Api_http.post = "/api/v1/auth/register"
    let data: Data = try set.serializedBytes()
    XCTAssertThrowsError(try RouteTable(descriptorSet: data)) { error in
      XCTAssertTrue("\(error)".contains("is declared by"), "\(error)")
    }
    // …and a path variable that names no field.
    set.file[file].service[service].method[login].options.Google_Api_http.post = "/api/v1/auth/{nope}/login"
    XCTAssertThrowsError(try RouteTable(descriptorSet: try set.serializedBytes() as Data))
  }
}
