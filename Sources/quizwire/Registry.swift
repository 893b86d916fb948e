import AuthService
import BenchService
import QuizService
import ScoringService
import ServiceKit

/// Every service of the suite. Adding a service is one line here (docs/services.md,
/// "Adding a service"); `serve`, `up`, `migrate` and `call` read the rest from the module.
enum Registry {
  static let modules: [any ServiceModule.Type] = [
    AuthModule.self,
    BenchModule.self,
    QuizModule.self,
    ScoringModule.self,
  ]

  static var names: [String] { modules.map { $0.name } }

  static func module(named name: String) -> (any ServiceModule.Type)? {
    modules.first { $0.name == name }
  }
}
