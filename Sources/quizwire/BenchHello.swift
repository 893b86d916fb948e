import ArgumentParser
import Hummingbird

/// The baseline of `scripts/bench-gateway`: a bare Hummingbird app with one route, to
/// measure what the gateway costs on top of the HTTP server it is built on.
struct BenchHello: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-hello", abstract: "A bare Hummingbird hello-world server (the gateway benchmark's baseline).",
    shouldDisplay: false)

  @Option(help: "Port to listen on (127.0.0.1).") var port = 8094

  func validate() throws {
    guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
  }

  func run() async throws {
    let router = Router()
    router.get("/hello") { _, _ in "hello, world\n" }
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: nil))
    try await app.runService()
  }
}
