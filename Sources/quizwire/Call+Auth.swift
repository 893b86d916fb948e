import ArgumentParser
import GRPCCore
import QuizwireProtos

/// `quizwire call` for auth.v1.AuthService (all unary).
enum AuthMethods {
  typealias M = Auth_V1_AuthService.Method

  static let names: [String] = [
    "Register", "Login", "Refresh", "Logout", "GetJWKS", "GetMe", "CreateAPIKey", "ListAPIKeys", "RevokeAPIKey",
    "RotateAPIKey", "Authorize", "ListUsers", "SetRoles", "RegisterClient", "RotateSigningKey", "ClientCredentials",
    "ExchangeCode", "IntrospectToken", "RevokeToken", "CheckAPIKey",
  ].map { "auth.v1.AuthService/" + $0 }

  static func call<T: ClientTransport>(_ method: String, json: String, client: GRPCClient<T>, metadata md: Metadata, options o: CallOptions) async throws {
    func u<In, Out>(_: In.Type, _: Out.Type, _ d: MethodDescriptor) async throws where In: SwiftProtobufMessage, Out: SwiftProtobufMessage {
      try await KnownMethods.unary(In.self, Out.self, d, json, client, md, o)
    }
    switch method.dropFirst("auth.v1.AuthService/".count) {
    case "Register": try await u(M.Register.Input.self, M.Register.Output.self, M.Register.descriptor)
    case "Login": try await u(M.Login.Input.self, M.Login.Output.self, M.Login.descriptor)
    case "Refresh": try await u(M.Refresh.Input.self, M.Refresh.Output.self, M.Refresh.descriptor)
    case "Logout": try await u(M.Logout.Input.self, M.Logout.Output.self, M.Logout.descriptor)
    case "GetJWKS": try await u(M.GetJWKS.Input.self, M.GetJWKS.Output.self, M.GetJWKS.descriptor)
    case "GetMe": try await u(M.GetMe.Input.self, M.GetMe.Output.self, M.GetMe.descriptor)
    case "CreateAPIKey": try await u(M.CreateAPIKey.Input.self, M.CreateAPIKey.Output.self, M.CreateAPIKey.descriptor)
    case "ListAPIKeys": try await u(M.ListAPIKeys.Input.self, M.ListAPIKeys.Output.self, M.ListAPIKeys.descriptor)
    case "RevokeAPIKey": try await u(M.RevokeAPIKey.Input.self, M.RevokeAPIKey.Output.self, M.RevokeAPIKey.descriptor)
    case "RotateAPIKey": try await u(M.RotateAPIKey.Input.self, M.RotateAPIKey.Output.self, M.RotateAPIKey.descriptor)
    case "Authorize": try await u(M.Authorize.Input.self, M.Authorize.Output.self, M.Authorize.descriptor)
    case "ListUsers": try await u(M.ListUsers.Input.self, M.ListUsers.Output.self, M.ListUsers.descriptor)
    case "SetRoles": try await u(M.SetRoles.Input.self, M.SetRoles.Output.self, M.SetRoles.descriptor)
    case "RegisterClient": try await u(M.RegisterClient.Input.self, M.RegisterClient.Output.self, M.RegisterClient.descriptor)
    case "RotateSigningKey": try await u(M.RotateSigningKey.Input.self, M.RotateSigningKey.Output.self, M.RotateSigningKey.descriptor)
    case "ClientCredentials": try await u(M.ClientCredentials.Input.self, M.ClientCredentials.Output.self, M.ClientCredentials.descriptor)
    case "ExchangeCode": try await u(M.ExchangeCode.Input.self, M.ExchangeCode.Output.self, M.ExchangeCode.descriptor)
    case "IntrospectToken": try await u(M.IntrospectToken.Input.self, M.IntrospectToken.Output.self, M.IntrospectToken.descriptor)
    case "RevokeToken": try await u(M.RevokeToken.Input.self, M.RevokeToken.Output.self, M.RevokeToken.descriptor)
    case "CheckAPIKey": try await u(M.CheckAPIKey.Input.self, M.CheckAPIKey.Output.self, M.CheckAPIKey.descriptor)
    default: throw ValidationError("unknown method \(method)")
    }
  }
}
