import NIOCore
import NIOSSL

/// TLS for the framed transport: NIOSSL's `TLSConfiguration`, so mutual TLS is just a server
/// configuration with `certificateVerification` on and trust roots set.
enum FramedTLS {
  static func serverHandler(_ context: NIOSSLContext) -> NIOSSLServerHandler {
    NIOSSLServerHandler(context: context)
  }

  static func clientHandler(_ context: NIOSSLContext, serverHostname: String?) throws -> NIOSSLClientHandler {
    // SNI must not be an IP address literal.
    let sni = serverHostname.flatMap { host -> String? in
      (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }
    return try NIOSSLClientHandler(context: context, serverHostname: sni)
  }
}
