import ArgumentParser
import Foundation
import ServiceKit
import Storage

/// `quizwire events dlq list|retry <service>`: the dead letters of a service's event
/// consumers (docs/services.md, "Events").
struct Events: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Inspect a service's event consumers.",
    subcommands: [DeadLetters.self])

  struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "dlq", abstract: "Events a consumer parked after its retries, and replaying them.",
      subcommands: [List.self, Retry.self])
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Dead letters, oldest first: id, group, feed offset, type, key@version, attempts, error.",
      discussion: "Settings: --data-dir, --config, --state parked|retry|resolved|all (default parked), --limit N. Payloads are never shown.")

    @Argument(help: "The consuming service.") var service: String
    @Argument(parsing: .captureForPassthrough, help: "--state parked, --limit N, --data-dir DIR, …") var settings: [String] = []

    func run() async throws {
      let keys = [ConfigKey("state", "parked (default), retry, resolved or all."), ConfigKey("limit", "Most shown (default 100).")]
      if SettingsParser.wantsHelp(settings) {
        print("quizwire events dlq list \(service)\n\nSettings:\n\(SettingsParser.help(Jobs.storageKeys + keys))")
        return
      }
      try await Jobs.withQueue(service, settings: settings, extraKeys: keys) { db, layers in
        let stateText = layers.string("state", default: "parked")
        let state = ConsumerStore.DeadLetter.State(rawValue: stateText)
        guard state != nil || stateText == "all" else { throw ValidationError("--state must be parked, retry, resolved or all") }
        let limit = try layers.int("limit", default: 100, in: 1...10_000)
        let letters = try await db.read { try await ConsumerStore.deadLetters(state: state, limit: limit, in: $0) }
        print("database: \(db.location)")
        if letters.isEmpty { print("no dead letters (\(stateText))") }
        let format = ISO8601DateFormatter()
        for letter in letters {
          let parked = format.string(from: Date(timeIntervalSince1970: Double(letter.parkedMs) / 1000))
          print(
            "  \(letter.id) \(letter.state.rawValue) group \(letter.group) \(letter.feed)@\(letter.event.offset) \(letter.event.type) "
              + "\(letter.event.key)@\(letter.event.keyVersion) attempts \(letter.attempts) parked \(parked): \(letter.error)")
        }
        if letters.contains(where: { $0.state == .parked }) {
          print("replay: quizwire events dlq retry \(service) <id>|all (the running service applies it; a newer version of its key wins)")
        }
      }
    }
  }

  struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Ask the running consumer to replay a parked event (or all of them).",
      discussion:
        "The service's consumer replays it within a second under the key-version rule: an event older than what was applied since resolves without effect. A replay that fails again is parked again with the new error."
    )

    @Argument(help: "The consuming service.") var service: String
    @Argument(help: "A dead letter's id (quizwire events dlq list), or all.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "--data-dir DIR, …") var settings: [String] = []

    func run() async throws {
      if SettingsParser.wantsHelp(settings) {
        print("quizwire events dlq retry \(service) <id>|all\n\nSettings:\n\(SettingsParser.help(Jobs.storageKeys))")
        return
      }
      try await Jobs.withQueue(service, settings: settings) { db, _ in
        let marked = try await db.transaction { try await ConsumerStore.requestRetry(id: self.id == "all" ? nil : self.id, in: $0) }
        guard marked > 0 else { throw ValidationError(self.id == "all" ? "no parked dead letters" : "no parked dead letter \(self.id)") }
        print("\(marked) dead letter(s) queued for replay; watch them with quizwire events dlq list \(service) --state all")
      }
    }
  }
}
