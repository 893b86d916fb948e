/// How the OpenAPI document spells each route's path. OpenAPI treats two templated paths of
/// one shape as the same path, so `/quizzes/{id}` (GetQuiz) and `/quizzes/{quiz.id}`
/// (UpdateQuiz) must be one path item whose variables share names; and clients fill
/// templates with format-string rules that read a dot as attribute access (schemathesis
/// fails on `{quiz.id}`), so a field path's dots become underscores. The binder still matches
/// by position: only the document's names change.
struct DocumentedPaths {
  /// Parameter names per shape ("/api/v1/quizzes/*"), one per variable, in order.
  private let namesByShape: [String: [String]]

  init(_ routes: [Route]) {
    var chosen: [String: (names: [String], dotted: Bool)] = [:]
    for route in routes {
      let variables = route.template.variables
      let dotted = variables.contains { $0.contains(".") }
      let shape = route.template.shape
      // The first route of a shape names it, unless a later one has plain field names: `id`
      // reads better than `quiz_id` for the quiz itself.
      if let current = chosen[shape], !(current.dotted && !dotted) { continue }
      chosen[shape] = (Self.uniqueNames(variables), dotted)
    }
    self.namesByShape = chosen.mapValues(\.names)
  }

  /// The parameter names of `route`'s variables, in order.
  func names(for route: Route) -> [String] {
    self.namesByShape[route.template.shape] ?? Self.uniqueNames(route.template.variables)
  }

  /// The document's path of `route`: its template with the shared names.
  func path(for route: Route) -> String {
    var names = self.names(for: route).makeIterator()
    let parts = route.template.segments.map { segment -> String in
      switch segment {
      case .literal(let text): text
      case .variable: "{" + (names.next() ?? "_") + "}"
      }
    }
    return "/" + parts.joined(separator: "/")
  }

  /// Dots to underscores, with a numeric suffix should two variables end up alike.
  private static func uniqueNames(_ variables: [String]) -> [String] {
    var seen: Set<String> = []
    return variables.map { variable in
      let base = variable.replacingOccurrences(of: ".", with: "_")
      var name = base
      var suffix = 2
      while seen.contains(name) {
        name = base + String(suffix)
        suffix += 1
      }
      seen.insert(name)
      return name
    }
  }
}
