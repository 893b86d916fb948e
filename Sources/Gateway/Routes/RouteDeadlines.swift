/// How long each route's upstream call may take: its deadline, sent to the service with the
/// call (the framed wire's deadline field, `grpc-timeout` over HTTP/2), after which the
/// browser gets 504 in the envelope. Without it every call would wait the client's general
/// 10 s — far longer than a browser should hang on a read.
///
/// One rule for the whole table, so no route is listed twice: reads get `read`, writes get
/// `write`, and the methods that hash a password (scrypt on the auth service's bounded
/// hashing executor, which queues under a login burst) get `passwordHashing`.
public struct RouteDeadlines: Sendable, Equatable {
  /// GET routes: answered from caches or one indexed query.
  public var read: Duration = .seconds(3)
  /// Every other verb: a transaction, perhaps an outbox row and an event.
  public var write: Duration = .seconds(5)
  /// `passwordHashingMethods`, whatever their verb.
  public var passwordHashing: Duration = .seconds(10)

  /// Methods that run scrypt: registration and every login that checks a password.
  public static let passwordHashingMethods: Set<String> = [
    "auth.v1.AuthService/Register", "auth.v1.AuthService/Login",
  ]

  public init(read: Duration = .seconds(3), write: Duration = .seconds(5), passwordHashing: Duration = .seconds(10)) {
    self.read = read
    self.write = write
    self.passwordHashing = passwordHashing
  }

  /// The deadline of `route`'s call.
  public func budget(for route: Route) -> Duration {
    if Self.passwordHashingMethods.contains(route.method.fullName) { return self.passwordHashing }
    return route.verb == "GET" ? self.read : self.write
  }
}
