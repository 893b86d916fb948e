import ArgumentParser
import Foundation
import FramedTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import LoadTest

/// `quizwire load --scenario play|watch`: provisioning (accounts on auth, the load quiz on
/// quiz) and then the timed players (and watchers) against the scoring service.
extension Load {
  static let scenarios = ["play", "watch"]

  func validatePlay(_ scenario: String) throws {
    guard Self.scenarios.contains(scenario) else {
      throw ValidationError("unknown --scenario \(scenario); known: \(Self.scenarios.joined(separator: ", "))")
    }
    guard (1...100_000).contains(players) else { throw ValidationError("--players must be 1...100000") }
    if let users, !(1...players).contains(users) { throw ValidationError("--users must be 1...players (\(players))") }
    guard (1...10_000).contains(watchers) else { throw ValidationError("--watchers must be 1...10000") }
    guard FramedTarget(auth) != nil, FramedTarget(quiz) != nil else { throw ValidationError("--auth and --quiz take host:port") }
    if let requests, requests < 1 { throw ValidationError("--requests must be ≥ 1") }
    _ = try Self.parseDuration(duration)
    _ = try Self.parseDuration(thinkTime, option: "--think-time", allowZero: true)
    _ = try Self.parseDuration(rampUp, option: "--ramp-up", allowZero: true)
  }

  func runPlay(progress: LoadProgress) async throws -> LoadReport {
    var options = PlayLoadOptions()
    options.players = players
    options.thinkTime = try Self.parseDuration(thinkTime, option: "--think-time", allowZero: true)
    options.rampUp = try Self.parseDuration(rampUp, option: "--ramp-up", allowZero: true)
    options.duration = try Self.parseDuration(duration)
    options.attempts = requests
    options.watchers = scenario == "watch" ? watchers : 0
    let userCount = users ?? min(players, 50)
    let log: @Sendable (String) -> Void = { FileHandle.standardError.write(Data("quizwire load: \($0)\n".utf8)) }

    let fixture: PlayFixture
    do {
      let authTransport = try FramedClientTransport(config: .init(targets: [FramedTarget(auth)!]))
      let quizTransport = try FramedClientTransport(config: .init(targets: [FramedTarget(quiz)!]))
      fixture = try await withGRPCClient(transport: authTransport) { authClient in
        try await withGRPCClient(transport: quizTransport) { quizClient in
          try await PlayFixture.provision(auth: authClient, quiz: quizClient, users: userCount, runID: options.runID, log: log)
        }
      }
    } catch {
      log("provisioning failed (auth \(auth), quiz \(quiz)): \(error)")
      throw ExitCode(1)
    }

    let ticker = isatty(STDERR_FILENO) == 1 ? Self.progressLine(progress, unit: "attempts") : nil
    defer { ticker?.cancel() }
    let load = PlayLoad(options: options, fixture: fixture)
    // Watchers get a connection of their own: a framed connection carries 1,024 streams.
    if let framed {
      guard let target = FramedTarget(framed) else { throw ValidationError("--framed takes host:port") }
      let players = try FramedClientTransport(config: .init(targets: [target]))
      let watchers = try FramedClientTransport(config: .init(targets: [target]))
      return try await withGRPCClient(transport: players) { client in
        try await withGRPCClient(transport: watchers) { watchClient in
          await load.run(scoring: client, watchClient: watchClient, transportName: "framed", progress: progress)
        }
      }
    }
    guard let grpc, let target = FramedTarget(grpc) else { throw ValidationError("--grpc takes host:port") }
    let players = try HTTP2ClientTransport.Posix(target: target.resolvableTarget, transportSecurity: .plaintext)
    let watchers = try HTTP2ClientTransport.Posix(target: target.resolvableTarget, transportSecurity: .plaintext)
    return try await withGRPCClient(transport: players) { client in
      try await withGRPCClient(transport: watchers) { watchClient in
        await load.run(scoring: client, watchClient: watchClient, transportName: "h2", progress: progress)
      }
    }
  }
}
