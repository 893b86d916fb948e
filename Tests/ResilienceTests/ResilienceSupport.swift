import Foundation

/// Where the `quizwire` executable of this build is (the tests start real server processes:
/// RSS, descriptors and CPU are process-wide).
enum QuizwireExecutable {
  static func path(file: StaticString = #filePath) throws -> String {
    var url = URL(fileURLWithPath: "\(file)")
    while url.path != "/", !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
      url.deleteLastPathComponent()
    }
    for configuration in ["debug", "release"] {
      let candidate = url.appendingPathComponent(".build/\(configuration)/quizwire").path
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "quizwire executable not built (swift build)"])
  }
}
