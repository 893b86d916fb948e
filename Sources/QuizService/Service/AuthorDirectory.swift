import GRPCCore
import QuizwireProtos
import ServiceKit

/// An author's public profile as the auth service has it.
public struct AuthorProfile: Sendable, Hashable {
  public var id: String
  public var displayName: String
  /// The profile version (the key version of auth's `user.*` events).
  public var version: Int64

  public init(id: String, displayName: String, version: Int64) {
    self.id = id
    self.displayName = displayName
    self.version = version
  }
}

/// Where the quiz service learns authors' public display names: auth's `BatchGetUsers`. Never
/// an email, never guessed.
public protocol AuthorDirectory: Sendable {
  /// The profiles of the users among `ids` that exist; unknown ids are left out. Throws when
  /// the directory can't answer (auth unreachable).
  func profiles(ids: [String]) async throws -> [String: AuthorProfile]
}

/// The auth service's `BatchGetUsers`, called with this service's client-credentials token.
public struct RemoteAuthorDirectory<Transport: ClientTransport>: AuthorDirectory {
  let client: Auth_V1_AuthService.Client<Transport>
  let credentials: ClientCredentialsToken

  /// `client` is the remote-auth client (`ModuleContext.remoteAuth`), run by the host.
  public init(client: GRPCClient<Transport>, credentials: ClientCredentialsToken) {
    self.client = Auth_V1_AuthService.Client(wrapping: client)
    self.credentials = credentials
  }

  public func profiles(ids: [String]) async throws -> [String: AuthorProfile] {
    var found: [String: AuthorProfile] = [:]
    let unique = Array(Set(ids)).sorted()
    for chunk in unique.chunked(1000) {
      let answer = try await self.batchGetUsers(Array(chunk))
      for user in answer.users { found[user.id] = AuthorProfile(id: user.id, displayName: user.displayName, version: user.version) }
    }
    return found
  }

  /// One call; a refused token (expired, or signed with a retired key) is fetched anew once.
  private func batchGetUsers(_ ids: [String]) async throws -> Auth_V1_BatchGetUsersResponse {
    let request = Auth_V1_BatchGetUsersRequest.with { $0.ids = ids }
    do {
      return try await self.client.batchGetUsers(request, metadata: ["authorization": "Bearer \(try await self.credentials.token())"])
    } catch let error as RPCError where error.code == .unauthenticated {
      await self.credentials.invalidate()
      return try await self.client.batchGetUsers(request, metadata: ["authorization": "Bearer \(try await self.credentials.token())"])
    }
  }
}

/// A fixed directory: tests, and tools without an auth service.
public struct StaticAuthorDirectory: AuthorDirectory {
  public var profiles: [String: AuthorProfile]
  public init(_ profiles: [AuthorProfile] = []) {
    self.profiles = Dictionary(profiles.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
  }
  public func profiles(ids: [String]) async throws -> [String: AuthorProfile] {
    self.profiles.filter { ids.contains($0.key) }
  }
}
