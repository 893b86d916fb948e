import Foundation
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A connection that says nothing, trickles its headers or sits idle after an answer is
/// closed: `request-head-timeout-ms` for the first request head, `idle-timeout-ms` between
/// requests. An event stream being answered is never idle.
final class GatewayConnectionTimeoutTests: XCTestCase {
  /// A plain TCP client: connects, sends what it is given, reports when the server closes.
  final class Socket {
    let fd: Int32

    init(_ base: String) throws {
      let hostPort = base.replacingOccurrences(of: "http://", with: "").split(separator: ":")
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_port = in_port_t(UInt16(hostPort[1])!).bigEndian
      inet_pton(AF_INET, String(hostPort[0]), &address.sin_addr)
      self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
      }
      guard connected == 0 else { throw RawHTTPError.io("connect failed (\(errno))") }
    }

    deinit { _ = Glibc.close(self.fd) }

    func send(_ text: String) {
      let bytes = Array(text.utf8)
      _ = bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, 0) }
    }

    /// How long until the server closed the connection (reading and dropping what it sends),
    /// or nil if it was still open after `limit`.
    func closed(within limit: Duration) -> Duration? {
      let start = ContinuousClock.now
      var buffer = [UInt8](repeating: 0, count: 4096)
      while ContinuousClock.now - start < limit {
        var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 20) > 0 else { continue }
        let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return ContinuousClock.now - start }
      }
      return nil
    }
  }

  func testSilentTricklingAndIdleConnectionsAreClosedButAStreamIsNot() async throws {
    let h = try await GatewayHarness.start(
      gatewayFlags: ["request-head-timeout-ms": "300", "idle-timeout-ms": "300", "sse-heartbeat-ms": "100"])
    do {
      // Connects and says nothing.
      let silent = try Socket(h.baseURL)
      let silentClosed = try XCTUnwrap(silent.closed(within: .seconds(5)), "a silent connection stayed open")
      XCTAssertGreaterThanOrEqual(silentClosed, .milliseconds(250))

      // Trickles a request head that never ends.
      let trickling = try Socket(h.baseURL)
      trickling.send("GET /api/v1/quizzes HTTP/1.1\r\nHost: 127.0.0.1\r\n")
      XCTAssertNotNil(trickling.closed(within: .seconds(5)), "a request head that never ends kept its connection")

      // One answered request, then nothing: closed after the idle timeout.
      let idle = try Socket(h.baseURL)
      idle.send("GET /api/v1/quizzes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      XCTAssertNotNil(idle.closed(within: .seconds(5)), "an idle keep-alive connection stayed open")

      // An event stream is answered for longer than either timeout and stays open.
      let stream = try RawHTTPStream(h.baseURL, "/api/v1/quizzes/qz_demo_swift_concurrency/leaderboard/stream")
      defer { stream.close() }
      XCTAssertEqual(stream.status, 200)
      try await Task.sleep(for: .seconds(1))
      let later = await stream.next(until: "\n\n", within: .seconds(2))
      XCTAssertNotNil(later, "the stream was closed")
      XCTAssertFalse(stream.eof)
    } catch {
      await h.stop()
      throw error
    }
    await h.stop()
  }
}
