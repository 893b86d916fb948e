import Foundation
import QuizwireProtos
import SwiftProtobuf

/// One HTTP route: a verb and path template bound to an RPC method by its `google.api.http`
/// option.
public struct Route: Sendable {
  /// Where the request message comes from besides path variables (HttpRule `body`).
  public enum Body: Sendable, Hashable {
    /// No body: every field not in the path comes from the query string.
    case none
    /// `body: "*"`: the whole request message is the body; no query parameters.
    case whole
    /// `body: "quiz"`: the body is that field (the resource itself); the rest from the query.
    case field(String)
  }

  /// "GET", "POST", "PATCH", "PUT", "DELETE".
  public let verb: String
  public let template: PathTemplate
  public let body: Body
  public let method: CatalogueMethod
  /// 201 for creates, 204 for deletes and empty answers, else 200.
  public let successStatus: Int
  /// For a 201: the GET route of the created resource, filled with its `id` for `Location`.
  public let location: PathTemplate?

  /// Only reads are retried: a retried write could apply twice.
  public var isIdempotent: Bool { self.verb == "GET" }
}

/// Every route, read once from the descriptor set `scripts/gen-protos` embeds in the method
/// catalogue: the protos' `google.api.http` options are the only place a route is declared.
public struct RouteTable: Sendable {
  public enum LoadError: Error, Sendable, CustomStringConvertible {
    case duplicate(verb: String, shape: String, methods: [String])
    case unknownMethod(String)
    case badRule(method: String, reason: String)
    public var description: String {
      switch self {
      case .duplicate(let verb, let shape, let methods): "\(verb) \(shape) is declared by \(methods.joined(separator: " and "))"
      case .unknownMethod(let name): "\(name) has a google.api.http option but is not in the method catalogue"
      case .badRule(let method, let reason): "\(method): \(reason)"
      }
    }
  }

  /// What a request path and verb lead to.
  public enum Match: Sendable {
    case route(Route, bindings: [(field: String, value: String)])
    /// The path exists with other verbs: 405 with `Allow`.
    case methodNotAllowed(allow: [String])
    case notFound
  }

  public let routes: [Route]
  public let schema: MessageSchema

  /// Creates that answer 201 although their names don't start with "Create" (AIP-133): the
  /// one fact about a route HttpRule can't express.
  static let creatingMethods: Set<String> = ["auth.v1.AuthService/Register", "scoring.v1.ScoringService/StartAttempt"]

  /// Reads the routes from a serialized `FileDescriptorSet` (the catalogue's by default).
  public init(descriptorSet: Data = MethodCatalogue.descriptorSet, catalogue: [CatalogueMethod] = MethodCatalogue.methods) throws {
    let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: descriptorSet, extensions: Google_Api_Annotations_Extensions)
    self.schema = MessageSchema(files: set.file)
    var rules: [(CatalogueMethod, Google_Api_HttpRule)] = []
    for file in set.file {
      for service in file.service {
        for method in service.method where method.options.hasGoogle_Api_http {
          let name = "\(file.package).\(service.name)/\(method.name)"
          guard let entry = catalogue.first(where: { $0.fullName == name }) else { throw LoadError.unknownMethod(name) }
          let rule = method.options.Google_Api_http
          rules.append((entry, rule))
          for extra in rule.additionalBindings { rules.append((entry, extra)) }
        }
      }
    }
    var routes: [(verb: String, template: PathTemplate, body: Route.Body, method: CatalogueMethod)] = []
    for (method, rule) in rules {
      guard method.kind == .unary else {
        throw LoadError.badRule(method: method.fullName, reason: "only unary methods have routes so far (streams come with SSE/WebSocket)")
      }
      let (verb, path): (String, String)
      switch rule.pattern {
      case .get(let p): (verb, path) = ("GET", p)
      case .post(let p): (verb, path) = ("POST", p)
      case .put(let p): (verb, path) = ("PUT", p)
      case .patch(let p): (verb, path) = ("PATCH", p)
      case .delete(let p): (verb, path) = ("DELETE", p)
      case .custom, .none: throw LoadError.badRule(method: method.fullName, reason: "custom or missing HTTP verb")
      }
      let template: PathTemplate
      do { template = try PathTemplate(path) } catch { throw LoadError.badRule(method: method.fullName, reason: "\(error)") }
      let requestType = method.request.protoMessageName
      for variable in template.variables where self.schema.path(variable, in: requestType) == nil {
        throw LoadError.badRule(method: method.fullName, reason: "path variable {\(variable)} is not a field of \(requestType)")
      }
      let body: Route.Body
      switch rule.body {
      case "": body = .none
      case "*": body = .whole
      case let field:
        guard let found = self.schema.field(field, in: requestType), found.type == .message, !found.isRepeated else {
          throw LoadError.badRule(method: method.fullName, reason: "body \"\(field)\" is not a message field of \(requestType)")
        }
        body = .field(found.name)
      }
      routes.append((verb, template, body, method))
    }
    var seen: [String: String] = [:]
    for route in routes {
      let key = route.verb + " " + route.template.shape
      if let other = seen[key] { throw LoadError.duplicate(verb: route.verb, shape: route.template.shape, methods: [other, route.method.fullName]) }
      seen[key] = route.method.fullName
    }
    let schema = self.schema
    self.routes = routes.map { route in
      let creates = route.verb == "POST" && (route.method.method.hasPrefix("Create") || Self.creatingMethods.contains(route.method.fullName))
      let empty = schema.fields(of: route.method.response.protoMessageName)?.isEmpty ?? false
      let status = creates ? 201 : (route.verb == "DELETE" || empty) ? 204 : 200
      // The created resource's own address: the GET route answering the same message type
      // with one variable, which the resource's `id` fills.
      let location =
        creates
        ? routes.first {
          $0.verb == "GET" && $0.method.response.protoMessageName == route.method.response.protoMessageName && $0.template.variables.count == 1
        }?.template : nil
      return Route(verb: route.verb, template: route.template, body: route.body, method: route.method, successStatus: status, location: location)
    }
  }

  /// The route for `verb` and `path` (the request path, without the query).
  public func match(verb: String, path: String) -> Match {
    let segments = PathTemplate.segments(of: path)
    var allowed: Set<String> = []
    var best: (Route, [(field: String, value: String)])?
    for route in self.routes {
      guard let bindings = route.template.match(segments) else { continue }
      guard route.verb == verb else {
        allowed.insert(route.verb)
        continue
      }
      if best.map({ route.template.literalCount > $0.0.template.literalCount }) ?? true { best = (route, bindings) }
    }
    if let (route, bindings) = best { return .route(route, bindings: bindings) }
    return allowed.isEmpty ? .notFound : .methodNotAllowed(allow: allowed.sorted())
  }

  /// The methods the routes call, by service ("auth.v1.AuthService"): what the gateway needs
  /// a client for.
  public var services: Set<String> { Set(self.routes.map(\.method.service)) }
}
