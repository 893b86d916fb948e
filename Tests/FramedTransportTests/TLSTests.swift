import BenchService
import Foundation
import FramedTransport
import GRPCCore
import NIOSSL
import QuizwireProtos
import XCTest

/// TLS and mutual TLS on the framed transport, with certificates made for the test by the
/// `openssl` command (a CA, a server certificate for 127.0.0.1/localhost, a client certificate).
final class TLSTests: XCTestCase {
  struct Certs {
    var ca: NIOSSLCertificate
    var serverChain: [NIOSSLCertificate]
    var serverKey: NIOSSLPrivateKey
    var clientChain: [NIOSSLCertificate]
    var clientKey: NIOSSLPrivateKey
  }

  func makeCerts() throws -> Certs {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quizwire-tls-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let script = """
      set -e
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=quizwire-test-ca 2>/dev/null
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
      printf 'extendedKeyUsage=clientAuth\\n' > client.ext
      for who in server client; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
        openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile $who.ext 2>/dev/null
      done
      """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    p.currentDirectoryURL = dir
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw TestFailure("openssl failed (\(p.terminationStatus)); is openssl installed?") }
    func path(_ f: String) -> String { dir.appendingPathComponent(f).path }
    return Certs(
      ca: try NIOSSLCertificate(file: path("ca.pem"), format: .pem),
      serverChain: try NIOSSLCertificate.fromPEMFile(path("server.pem")),
      serverKey: try NIOSSLPrivateKey(file: path("server.key"), format: .pem),
      clientChain: try NIOSSLCertificate.fromPEMFile(path("client.pem")),
      clientKey: try NIOSSLPrivateKey(file: path("client.key"), format: .pem))
  }

  struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { self.description = d }
  }

  func serverTLS(_ c: Certs, requireClientCertificate: Bool) -> TLSConfiguration {
    var tls = TLSConfiguration.makeServerConfiguration(certificateChain: c.serverChain.map { .certificate($0) }, privateKey: .privateKey(c.serverKey))
    if requireClientCertificate {
      tls.certificateVerification = .noHostnameVerification
      tls.trustRoots = .certificates([c.ca])
    }
    return tls
  }

  func clientTLS(_ c: Certs, withCertificate: Bool) -> TLSConfiguration {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates([c.ca])
    tls.certificateVerification = .fullVerification
    if withCertificate {
      tls.certificateChain = c.clientChain.map { .certificate($0) }
      tls.privateKey = .privateKey(c.clientKey)
    }
    return tls
  }

  func testTLS() async throws {
    let certs = try makeCerts()
    let server = try await FramedTestServer(services: [EchoService()]) { $0.tls = self.serverTLS(certs, requireClientCertificate: false) }
    try await withFramedClient(
      [server.target],
      configure: {
        $0.tls = self.clientTLS(certs, withCertificate: false)
        $0.serverHostname = "localhost"
      }
    ) { grpc in
      let reply = try await Bench_V1_EchoService.Client(wrapping: grpc).unary(echoRequest("secret"))
      XCTAssertEqual(reply.payload, Data("secret".utf8))
    }
    // A plaintext client cannot talk to a TLS server.
    try await withFramedClient([server.target], configure: { $0.connectTimeout = .seconds(2) }) { grpc in
      let error = await expectRPCError { _ = try await Bench_V1_EchoService.Client(wrapping: grpc).unary(echoRequest("plain")) }
      XCTAssertEqual(error?.code, .unavailable)
    }
    try await server.drain()
  }

  func testMutualTLSRefusesAClientWithoutACertificate() async throws {
    let certs = try makeCerts()
    let server = try await FramedTestServer(services: [EchoService()]) { $0.tls = self.serverTLS(certs, requireClientCertificate: true) }
    try await withFramedClient(
      [server.target],
      configure: {
        $0.tls = self.clientTLS(certs, withCertificate: true)
        $0.serverHostname = "localhost"
      }
    ) { grpc in
      let reply = try await Bench_V1_EchoService.Client(wrapping: grpc).unary(echoRequest("mutual"))
      XCTAssertEqual(reply.payload, Data("mutual".utf8))
    }
    try await withFramedClient(
      [server.target],
      configure: {
        $0.tls = self.clientTLS(certs, withCertificate: false)
        $0.serverHostname = "localhost"
      }
    ) { grpc in
      let error = await expectRPCError { _ = try await Bench_V1_EchoService.Client(wrapping: grpc).unary(echoRequest("anonymous")) }
      XCTAssertEqual(error?.code, .unavailable, "the handshake is refused")
    }
    try await server.drain()
  }
}
