import Foundation
import GRPCCore
import ServiceContextModule

/// Outermost interceptor: takes `x-request-id` from the caller (if sane) or makes one, puts a
/// `CallInfo` into the task's `ServiceContext` for everything inside, and echoes the id in the
/// response metadata so a caller can quote it.
public struct RequestIDInterceptor: ServerInterceptor {
  public static let key = "x-request-id"

  public init() {}

  /// Accepts ids of 1–128 visible ASCII characters; anything else is replaced, so a log line
  /// can't be forged through it.
  public static func accept(_ candidate: String?) -> String? {
    guard let candidate, (1...128).contains(candidate.utf8.count) else { return nil }
    return candidate.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") } ? candidate : nil
  }

  public static func makeID() -> String { UUID().uuidString.lowercased() }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let id = Self.accept(request.metadata.first(Self.key)) ?? Self.makeID()
    let info = CallInfo(requestID: id, method: context.descriptor, peer: context.remotePeer)
    var serviceContext = ServiceContext.current ?? .topLevel
    serviceContext.call = info
    var response: StreamingServerResponse<Output>
    do {
      response = try await ServiceContext.withValue(serviceContext) { try await next(request, context) }
    } catch let error as RPCError {
      var error = error
      error.metadata.replaceOrAddString(id, forKey: Self.key)
      throw error
    }
    switch response.accepted {
    case .success(var contents):
      contents.metadata.replaceOrAddString(id, forKey: Self.key)
      // Streaming handlers run in the producer, after this returns: give them the call info.
      let producer = contents.producer
      let callContext = serviceContext
      contents.producer = { writer in try await ServiceContext.withValue(callContext) { try await producer(writer) } }
      response.accepted = .success(contents)
    case .failure(var error):
      error.metadata.replaceOrAddString(id, forKey: Self.key)
      response.accepted = .failure(error)
    }
    return response
  }
}
