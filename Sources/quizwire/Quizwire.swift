import ArgumentParser

@main
struct Quizwire: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quizwire",
    abstract: "The Quizwire suite: services on the framed wire and gRPC/HTTP2, and the tools to drive them.",
    subcommands: [
      Up.self, Serve.self, Call.self, Play.self, Load.self, Bench.self, Migrate.self, Keys.self, Jobs.self, Events.self, Scoring.self, BenchHello.self,
    ]
  )
}
