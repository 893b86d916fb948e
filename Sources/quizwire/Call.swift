import ArgumentParser
import FramedTransport
import FramedWire
import Foundation
import GRPCCore
import GRPCNIOTransportCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import QuizwireProtos
import SwiftProtobuf

struct Call: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Make one call with a JSON request and print the JSON response(s) or the status.",
    discussion: """
      Examples: quizwire call --framed 127.0.0.1:7400 bench.v1.EchoService/Unary '{"payload":"aGk="}'
        quizwire call --framed 127.0.0.1:7410 auth.v1.AuthService/Register '{"email":"a@example.com","password":"correct horse battery"}'
        quizwire call --framed 127.0.0.1:7410 auth.v1.AuthService/Login '{"email":"a@example.com","password":"correct horse battery"}'
        quizwire call --framed 127.0.0.1:7410 --metadata "authorization=Bearer <token>" auth.v1.AuthService/GetMe
      Client- and bidi-streaming methods take a JSON array of requests.
      Methods (from the generated catalogue): \(MethodCatalogue.methods.map(\.fullName).joined(separator: ", "))
      Exit status: 0 on OK, otherwise the gRPC status code.
      """)

  @Option(help: "Call over the framed wire at host:port.")
  var framed: String?
  @Option(help: "Call over gRPC/HTTP2 at host:port.")
  var grpc: String?
  @Option(help: "Deadline in seconds.")
  var timeout: Double?
  @Option(help: "Request compression: identity, gzip or deflate.")
  var compression = "identity"
  @Option(name: .customLong("metadata"), help: "Request metadata key=value (repeatable).")
  var metadata: [String] = []
  @Argument(help: "package.Service/Method")
  var method: String
  @Argument(help: "The request as JSON (an array for client/bidi streaming).")
  var request = "{}"

  func validate() throws {
    guard (framed == nil) != (grpc == nil) else { throw ValidationError("give exactly one of --framed or --grpc") }
    guard MethodCatalogue.method(named: method) != nil else {
      throw ValidationError("unknown method \(method); known: \(MethodCatalogue.methods.map(\.fullName).joined(separator: ", "))")
    }
    guard MessageEncoding(rawValue: compression) != nil else { throw ValidationError("--compression must be identity, gzip or deflate") }
    if let timeout, !(timeout.isFinite && timeout >= 0.001 && timeout <= 1_000_000) {
      throw ValidationError("--timeout takes seconds between 0.001 and 1000000")
    }
    for m in metadata {
      let parts = m.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      guard parts.count == 2 else { throw ValidationError("--metadata takes key=value, got \(m)") }
      let key = String(parts[0]).lowercased()
      guard !key.isEmpty, key.utf8.count <= 255, !key.hasPrefix("grpc-"), !key.hasSuffix("-bin"),
        key.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D })
      else {
        throw ValidationError("--metadata key \"\(key)\" must be [0-9a-z_.-], not start with grpc- and not end in -bin (text values only)")
      }
      guard parts[1].utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else {
        throw ValidationError("--metadata value for \(key) must be printable ASCII")
      }
    }
  }

  func run() async throws {
    var options = CallOptions.defaults
    if let timeout { options.timeout = .milliseconds(Int64(timeout * 1000)) }
    switch compression {
    case "gzip": options.compression = .gzip
    case "deflate": options.compression = .deflate
    default: options.compression = CompressionAlgorithm.none
    }
    var md = Metadata()
    for m in metadata {
      let parts = m.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      md.addString(String(parts[1]), forKey: String(parts[0]).lowercased())
    }
    guard let entry = MethodCatalogue.method(named: method) else { throw ValidationError("unknown method \(method)") }
    var outcome: Result<Void, any Error> = .success(())
    do {
      if let framed {
        guard let target = FramedTarget(framed) else { throw ValidationError("--framed takes host:port") }
        var config = FramedClientTransport.Config(targets: [target])
        config.compression = MessageEncoding(rawValue: compression) ?? .identity
        let transport = try FramedClientTransport(config: config)
        try await withGRPCClient(transport: transport) { try await CatalogueCall.call(entry, json: request, client: $0, metadata: md, options: options) }
      } else {
        guard let grpc, let target = FramedTarget(grpc) else { throw ValidationError("--grpc takes host:port") }
        let transport = try HTTP2ClientTransport.Posix(
          target: target.resolvableTarget, transportSecurity: .plaintext,
          config: .defaults { $0.compression.enabledAlgorithms = .all })
        try await withGRPCClient(transport: transport) { try await CatalogueCall.call(entry, json: request, client: $0, metadata: md, options: options) }
      }
    } catch {
      outcome = .failure(error)
    }
    if case .failure(let error) = outcome {
      if let rpc = error as? RPCError {
        FileHandle.standardError.write("status: \(rpc.code) (\(rpc.code.rawValue)): \(rpc.message)\n".data(using: .utf8)!)
        throw ExitCode(Int32(rpc.code.rawValue))
      }
      throw error
    }
  }
}

/// One call of any catalogue method with JSON in and out.
enum CatalogueCall {
  static func call<T: ClientTransport>(_ entry: CatalogueMethod, json: String, client: GRPCClient<T>, metadata: Metadata, options: CallOptions) async throws {
    try await self.call(entry.request, entry.response, entry, json, client, metadata, options)
  }

  private static func call<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message, T: ClientTransport>(
    _: In.Type, _: Out.Type, _ entry: CatalogueMethod, _ json: String, _ client: GRPCClient<T>, _ md: Metadata, _ options: CallOptions
  ) async throws {
    switch entry.kind {
    case .unary: try await unary(In.self, Out.self, entry.descriptor, json, client, md, options)
    case .serverStreaming: try await serverStreaming(In.self, Out.self, entry.descriptor, json, client, md, options)
    case .clientStreaming, .bidiStreaming: try await streaming(In.self, Out.self, entry.descriptor, json, client, md, options)
    }
  }

  static func parse<M: SwiftProtobuf.Message>(_ type: M.Type, _ json: String) throws -> M {
    do { return try M(jsonString: json) } catch {
      throw ValidationError("request is not a valid \(M.protoMessageName) in JSON: \(error)")
    }
  }

  static func parseArray<M: SwiftProtobuf.Message>(_ type: M.Type, _ json: String) throws -> [M] {
    let trimmed = json.trimmingCharacters(in: .whitespacesAndNewlines)
    guard trimmed.hasPrefix("[") else { return [try parse(type, json)] }
    guard let data = trimmed.data(using: .utf8), let array = try JSONSerialization.jsonObject(with: data) as? [Any] else {
      throw ValidationError("request must be a JSON array of \(M.protoMessageName)")
    }
    return try array.map { element in
      let d = try JSONSerialization.data(withJSONObject: element)
      return try parse(type, String(decoding: d, as: UTF8.self))
    }
  }

  static func printJSON(_ message: some SwiftProtobuf.Message) throws {
    print(try message.jsonString())
  }

  static func unary<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message, T: ClientTransport>(
    _: In.Type, _: Out.Type, _ d: MethodDescriptor, _ json: String, _ client: GRPCClient<T>, _ md: Metadata, _ options: CallOptions
  ) async throws {
    let request = ClientRequest(message: try parse(In.self, json), metadata: md)
    try await client.unary(request: request, descriptor: d, serializer: ProtobufSerializer<In>(), deserializer: ProtobufDeserializer<Out>(), options: options) {
      try printJSON(try $0.message)
    }
  }

  static func serverStreaming<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message, T: ClientTransport>(
    _: In.Type, _: Out.Type, _ d: MethodDescriptor, _ json: String, _ client: GRPCClient<T>, _ md: Metadata, _ options: CallOptions
  ) async throws {
    let request = ClientRequest(message: try parse(In.self, json), metadata: md)
    try await client.serverStreaming(
      request: request, descriptor: d, serializer: ProtobufSerializer<In>(), deserializer: ProtobufDeserializer<Out>(), options: options
    ) {
      for try await message in $0.messages { try printJSON(message) }
    }
  }

  static func streaming<In: SwiftProtobuf.Message, Out: SwiftProtobuf.Message, T: ClientTransport>(
    _: In.Type, _: Out.Type, _ d: MethodDescriptor, _ json: String, _ client: GRPCClient<T>, _ md: Metadata, _ options: CallOptions
  ) async throws {
    let messages = try parseArray(In.self, json)
    let request = StreamingClientRequest<In>(metadata: md) { writer in try await writer.write(contentsOf: messages) }
    try await client.bidirectionalStreaming(
      request: request, descriptor: d, serializer: ProtobufSerializer<In>(), deserializer: ProtobufDeserializer<Out>(), options: options
    ) {
      for try await message in $0.messages { try printJSON(message) }
    }
  }
}

extension FramedTarget {
  /// The HTTP/2 transport's target: an IPv4 literal as is, anything else through DNS (an
  /// `.ipv4` target given a name fails late and unhelpfully).
  var resolvableTarget: any ResolvableTarget {
    let octets = self.host.split(separator: ".", omittingEmptySubsequences: false)
    if octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) {
      return ResolvableTargets.IPv4(addresses: [SocketAddress.IPv4(host: self.host, port: self.port)])
    }
    return ResolvableTargets.DNS(host: self.host, port: self.port)
  }
}
