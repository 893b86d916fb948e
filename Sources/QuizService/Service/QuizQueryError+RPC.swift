import GRPCCore
import GRPCProtobuf

/// A refused list request is INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the
/// request field, and a message that says where (for filters, the character position) and
/// what: "invalid request: filter: at 14: unknown field \"colour\" …".
extension QuizQueryError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code { .invalidArgument }
  public var rpcErrorMessage: String { "invalid request: \(self.description)" }
  public var rpcErrorMetadata: Metadata { self.status.rpcErrorMetadata }

  var status: GoogleRPCStatus {
    let violation = self.position.map { "at \($0): \(self.reason)" } ?? self.reason
    return GoogleRPCStatus(
      code: .invalidArgument, message: self.rpcErrorMessage, details: [.badRequest(violations: [.init(field: self.field, description: violation)])])
  }
}
