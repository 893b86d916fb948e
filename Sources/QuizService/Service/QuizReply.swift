import GRPCCore
import GRPCProtobuf
import QuizwireProtos

/// GetQuiz's answer, with its wire form when there is one: a cached quiz is the same bytes for
/// every anonymous reader, and serializing a quiz with its questions on every read was ~10 %
/// of the service's CPU for a cached read.
enum QuizReply: Sendable {
  case message(Quiz_V1_Quiz)
  case cached(CachedQuiz)
}

/// Writes a `QuizReply`: the bytes kept with a cached quiz, or the message serialized now.
struct QuizReplySerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ reply: QuizReply) throws -> Bytes {
    switch reply {
    case .message(let quiz): return try ProtobufSerializer<Quiz_V1_Quiz>().serialize(quiz)
    case .cached(let cached): return Bytes(cached.serialized)
    }
  }
}

/// The quiz service as its listeners serve it: the generated registration, except that
/// GetQuiz answers through `QuizReply`. The reply's bytes are a `Quiz` either way.
public struct QuizRPCs: RegistrableRPCService {
  public let service: QuizService
  public init(_ service: QuizService) { self.service = service }

  public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    self.service.registerMethods(with: &router)
    let service = self.service
    // Replaces the generated handler (same descriptor, same request and reply on the wire).
    router.registerHandler(
      forMethod: Quiz_V1_QuizService.Method.GetQuiz.descriptor, deserializer: ProtobufDeserializer<Quiz_V1_GetQuizRequest>(),
      serializer: QuizReplySerializer()
    ) { request, context in
      let single = try await ServerRequest(stream: request)
      return StreamingServerResponse(single: ServerResponse(message: try await service.quizReply(single.message), metadata: [:]))
    }
  }
}
