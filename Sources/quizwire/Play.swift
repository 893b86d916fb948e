import ArgumentParser
import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import QuizwireProtos

/// `quizwire play`: a quiz in the terminal over `scoring.v1.ScoringService/Play`. Answers are
/// read line by line from standard input, so a pipe works as well as a keyboard.
struct Play: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Play a quiz in the terminal over scoring.v1.ScoringService/Play (the demo quiz unless --quiz-id).",
    discussion: """
      Signs in with --email and --password (or QUIZWIRE_PASSWORD) on --auth, then shows each question with numbered
      choices and reads the answer from standard input: a number, several for multiple choice (1,3 or 1 3), text for
      short-text questions. Feedback and the running score follow each answer, the final score ends the game.
      Example: printf '1\\n2\\n1,2,4\\nawait\\n1\\n' | quizwire play --email you@example.com
      """)

  @Option(help: "The quiz to play.") var quizID = "qz_demo_swift_concurrency"
  @Option(help: "Account email.") var email: String?
  @Option(help: "Account password (or QUIZWIRE_PASSWORD).") var password: String?
  @Option(help: "The auth service (framed host:port).") var auth = "127.0.0.1:7410"
  @Option(help: "The scoring service over the framed wire (host:port; default 127.0.0.1:7430).") var framed: String?
  @Option(help: "The scoring service over gRPC/HTTP2 instead (host:port).") var grpc: String?

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  func validate() throws {
    guard framed == nil || grpc == nil else { throw ValidationError("give at most one of --framed or --grpc") }
    guard email != nil else { throw ValidationError("--email is required") }
    guard password ?? ProcessInfo.processInfo.environment["QUIZWIRE_PASSWORD"] != nil else {
      throw ValidationError("give --password or set QUIZWIRE_PASSWORD")
    }
    for target in [auth, framed, grpc].compactMap({ $0 }) where FramedTarget(target) == nil {
      throw ValidationError("\(target) is not host:port")
    }
  }

  func run() async throws {
    do {
      let token = try await self.signIn()
      if let grpc {
        let transport = try HTTP2ClientTransport.Posix(target: FramedTarget(grpc)!.resolvableTarget, transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { try await self.play(client: $0, token: token, address: grpc) }
      } else {
        let address = framed ?? "127.0.0.1:7430"
        let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(address)!]))
        try await withGRPCClient(transport: transport) { try await self.play(client: $0, token: token, address: address) }
      }
    } catch let failure as Failure {
      // On standard error, exit status 1: standard output stays the game's transcript.
      fflush(nil)
      FileHandle.standardError.write(Data("quizwire play: \(failure.description)\n".utf8))
      throw ExitCode(1)
    }
  }

  func signIn() async throws -> String {
    let secret = password ?? ProcessInfo.processInfo.environment["QUIZWIRE_PASSWORD"] ?? ""
    let transport = try FramedClientTransport(config: .init(targets: [FramedTarget(auth)!]))
    do {
      return try await withGRPCClient(transport: transport) { client in
        try await Auth_V1_AuthService.Client(wrapping: client).login(
          .with {
            $0.email = email ?? ""
            $0.password = secret
          }, options: Self.callOptions(seconds: 30)
        ).accessToken
      }
    } catch let error as RPCError {
      switch error.code {
      case .unavailable, .deadlineExceeded: throw Failure(description: "cannot reach the auth service at \(auth): \(error.message)")
      default: throw Failure(description: "sign-in failed: \(error.code): \(error.message)")
      }
    }
  }

  static func callOptions(seconds: Int64) -> CallOptions {
    var options = CallOptions.defaults
    options.timeout = .seconds(seconds)
    return options
  }

  func play<T: ClientTransport>(client: GRPCClient<T>, token: String, address: String) async throws {
    let (requests, sink) = AsyncStream.makeStream(of: Scoring_V1_PlayRequest.self)
    let quizID = self.quizID
    sink.yield(.with { $0.start = .with { $0.quizID = quizID } })
    let (inputs, feed) = AsyncStream.makeStream(of: PlaySession.Input.self)
    StandardInputLines.start(into: feed)
    do {
      try await Scoring_V1_ScoringService.Client(wrapping: client).play(
        metadata: ["authorization": .string("Bearer \(token)")],
        requestProducer: { writer in
          for await request in requests { try await writer.write(request) }
        },
        onResponse: { response in
          defer { sink.finish() }
          let forward = Task {
            do {
              for try await event in response.messages { feed.yield(.event(event)) }
              feed.yield(.ended(nil))
            } catch {
              feed.yield(.ended(error))
            }
          }
          defer { forward.cancel() }
          var session = PlaySession { sink.yield($0) }
          for await input in inputs {
            if try session.handle(input) { return }
          }
        })
    } catch let error as RPCError {
      switch error.code {
      case .unavailable, .deadlineExceeded: throw Failure(description: "cannot reach the scoring service at \(address): \(error.message)")
      default: throw Failure(description: "\(error.code): \(error.message)")
      }
    } catch let error as PlaySession.Stop {
      throw Failure(description: error.message)
    }
  }
}

/// Standard input, line by line, on a thread of its own (a blocking read must not hold one of
/// the cooperative pool's few threads).
enum StandardInputLines {
  static func start(into feed: AsyncStream<PlaySession.Input>.Continuation) {
    let thread = Thread {
      while let line = readLine(strippingNewline: true) { feed.yield(.line(line)) }
      feed.yield(.endOfInput)
    }
    thread.start()
  }
}
