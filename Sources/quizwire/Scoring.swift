import ArgumentParser
import Foundation
import ScoringService
import ServiceKit
import Storage

/// `quizwire scoring rebuild-projections`: the scoring service's projections (attempts read
/// model, leaderboards, user stats) dropped and rebuilt from its `attempt_events` log.
struct Scoring: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Scoring service maintenance.", subcommands: [RebuildProjections.self])

  struct RebuildProjections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "rebuild-projections",
      abstract: "Drop and rebuild attempts, leaderboards and user stats from the attempt_events log (one transaction).",
      discussion: "Settings: --data-dir, --pool-size, --config (QUIZWIRE_DATABASE_URL for PostgreSQL). Running replicas may stay up: "
        + "the rebuild is one transaction, and every rebuilt board gets a newer version, so watchers reload it.")

    @Argument(parsing: .captureForPassthrough, help: "--data-dir DIR, …") var settings: [String] = []

    func run() async throws {
      if SettingsParser.wantsHelp(settings) {
        print("quizwire scoring rebuild-projections\n\nSettings:\n\(SettingsParser.help(Jobs.storageKeys))")
        return
      }
      // An operator's action on every player's data: on the audit trail either way.
      let audit = AuditLog(sink: .standardOutput)
      let who = "operator:" + (ProcessInfo.processInfo.environment["USER"] ?? "unknown")
      let folded: Int
      do {
        folded = try await Jobs.withQueue(ScoringModule.name, settings: settings) { db, _ in
          try await db.transaction { uow in try await ProjectionRebuild().run(in: uow) }
        }
      } catch {
        audit.record("scoring.rebuild_projections", target: "scoring", outcome: .failed, by: who)
        throw error
      }
      audit.record("scoring.rebuild_projections", target: "scoring", details: ["attempts": "\(folded)"], by: who)
      print("rebuilt the projections from \(folded) attempts")
    }
  }
}
