import Foundation
import XCTest

/// `quizwire serve auth` and `quizwire serve quiz` as a user runs them, and `quizwire call` on
/// every quiz method over both transports (the catalogue is generated from the protos).
extension CLITests {
  func testCallReachesEveryQuizMethodOverBothTransports() throws {
    let dir = NSTemporaryDirectory() + "quizwire-cli-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let ports = ["--framed-port", "0", "--grpc-port", "0", "--admin-port", "0", "--data-dir", dir]
    let auth = try Server(try self.executable(), ["serve", "auth", "--internal-clients", "quiz"] + ports)
    defer { auth.stop() }
    let authFramed = try XCTUnwrap(try auth.addresses(timeout: 60)["framed"])
    let secretFile = dir + "/quiz-client.secret"
    let quiz = try Server(
      try self.executable(), ["serve", "quiz", "--auth-target", authFramed] + ports, environment: ["QUIZWIRE_CLIENT_SECRET_FILE": secretFile])
    defer { quiz.stop() }
    let quizAddresses = try quiz.addresses(timeout: 60)

    func call(_ transport: [String], _ method: String, _ body: String, token: String? = nil) throws -> [String: Any] {
      let credentials = token.map { ["--metadata", "authorization=Bearer \($0)"] } ?? []
      let (status, stdout) = try self.run(["call"] + transport + credentials + [method, body])
      XCTAssertEqual(status, 0, "\(method) over \(transport[0]): \(stdout)")
      // A server stream prints one JSON object per line; the first one is enough here.
      let first = stdout.split(separator: "\n").first.map(String.init) ?? ""
      return (try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any]) ?? [:]
    }

    let authCall = ["--framed", authFramed]
    _ = try call(authCall, "auth.v1.AuthService/Register", #"{"email":"cli@example.com","password":"correct horse battery"}"#)
    let user = try XCTUnwrap(
      try call(authCall, "auth.v1.AuthService/Login", #"{"email":"cli@example.com","password":"correct horse battery"}"#)["accessToken"] as? String)
    let secret = try String(contentsOfFile: secretFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    let service = try XCTUnwrap(
      try call(authCall, "auth.v1.AuthService/ClientCredentials", #"{"clientId":"quiz","clientSecret":"\#(secret)"}"#)["accessToken"] as? String)

    let m = "quiz.v1.QuizService/"
    let question =
      #"{"kind":"QUESTION_KIND_SINGLE_CHOICE","prompt":"Pick a","choices":[{"id":"a","text":"A"},{"id":"b","text":"B"}],"answerKey":{"correctChoiceIds":["a"]}}"#
    for transport in [["--framed", quizAddresses["framed"]!], ["--grpc", quizAddresses["grpc"]!]] {
      let created = try call(transport, m + "CreateQuiz", #"{"quiz":{"title":"From the CLI","tags":["cli"]}}"#, token: user)
      let id = try XCTUnwrap(created["id"] as? String)
      _ = try call(transport, m + "GetQuiz", #"{"id":"\#(id)"}"#, token: user)
      _ = try call(transport, m + "UpdateQuiz", #"{"quiz":{"id":"\#(id)","title":"Renamed"},"updateMask":"title"}"#, token: user)
      let added = try call(transport, m + "AddQuestion", #"{"quizId":"\#(id)","question":\#(question)}"#, token: user)
      let first = try XCTUnwrap(((added["questions"] as? [[String: Any]])?.first?["id"]) as? String)
      _ = try call(
        transport, m + "UpdateQuestion", #"{"quizId":"\#(id)","question":{"id":"\#(first)","prompt":"Pick a, again"},"updateMask":"prompt"}"#,
        token: user)
      let imported = try call(transport, m + "ImportQuestions", #"[{"target":{"quizId":"\#(id)"}},{"question":\#(question)}]"#, token: user)
      XCTAssertEqual(imported["imported"] as? Int, 1)
      let full = try call(transport, m + "GetQuiz", #"{"id":"\#(id)"}"#, token: user)
      let ids = try XCTUnwrap((full["questions"] as? [[String: Any]])?.compactMap { $0["id"] as? String })
      XCTAssertEqual(ids.count, 2)
      _ = try call(transport, m + "ReorderQuestions", #"{"quizId":"\#(id)","questionIds":["\#(ids[1])","\#(ids[0])"]}"#, token: user)
      _ = try call(transport, m + "RemoveQuestion", #"{"quizId":"\#(id)","questionId":"\#(ids[1])"}"#, token: user)
      let published = try call(transport, m + "PublishQuiz", #"{"id":"\#(id)"}"#, token: user)
      XCTAssertEqual(published["state"] as? String, "QUIZ_STATE_PUBLISHED")
      let page = try call(transport, m + "ListQuizzes", #"{"filter":"tag = \"cli\"","includeTotal":true}"#)
      XCTAssertNotNil(page["quizzes"])
      let batch = try call(transport, m + "BatchGetQuizzes", #"{"ids":["\#(id)","qz_nope"]}"#)
      XCTAssertEqual(batch["missingIds"] as? [String], ["qz_nope"])
      _ = try call(transport, m + "ExportQuizzes", #"{"readMask":"id,title"}"#)
      let keys = try call(transport, m + "GetAnswerKey", #"{"quizId":"\#(id)"}"#, token: service)
      XCTAssertEqual((keys["answerKeys"] as? [Any])?.count, 1)
      _ = try call(transport, m + "UnpublishQuiz", #"{"id":"\#(id)"}"#, token: user)
      _ = try call(transport, m + "ArchiveQuiz", #"{"id":"\#(id)"}"#, token: user)
      _ = try call(transport, m + "DeleteQuiz", #"{"id":"\#(id)"}"#, token: user)
    }
    // The answer keys are for services only, whatever the transport: exit status is the code.
    XCTAssertEqual(try self.run(["call", "--framed", quizAddresses["framed"]!, m + "GetAnswerKey", #"{"quizId":"x"}"#]).status, 16)
    XCTAssertFalse(quiz.output.joined().contains(user), "no token in the quiz service's log")
  }
}
