import Foundation
import GRPCCore
import QuizwireProtos

/// `quizwire load --method auth.v1.AuthService/Register`: every call signs up a new account
/// (`load-<run>-<n>@example.com`, one fixed good password), so each one does the full work —
/// a production scrypt hash and a write transaction — and none fails as a duplicate.
extension LoadGenerator {
  public static let registerMethod = "auth.v1.AuthService/Register"
  /// Long and not on the common-password list, so the policy accepts it.
  static let registerPassword = "load generator password 7"

  /// - Parameter runID: keeps emails unique across runs against the same database.
  public func runRegister<T: ClientTransport>(
    client: GRPCClient<T>, transportName: String, runID: String = LoadGenerator.makeRunID(),
    progress: LoadProgress = LoadProgress()
  ) async -> LoadReport {
    let auth = Auth_V1_AuthService.Client(wrapping: client)
    let sequence = SharedCounter(0)
    return await self.drive(method: Self.registerMethod, transportName: transportName, progress: progress) { began, _, tally in
      let n = sequence.add(1)
      do {
        _ = try await auth.register(
          .with {
            $0.email = "load-\(runID)-\(n)@example.com"
            $0.password = Self.registerPassword
          })
        tally.latency.record(ContinuousClock.now - began)
        tally.calls += 1
        tally.messages += 2
        progress.calls.add(1, ordering: .relaxed)
      } catch {
        tally.failed(error, progress: progress)
      }
    }
  }

  /// 8 random hex digits.
  public static func makeRunID() -> String {
    let hex = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    return String(repeating: "0", count: 8 - hex.count) + hex
  }
}
