import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A streaming HTTP/1.1 GET over a plain socket, read as it arrives: FoundationNetworking's
/// URLSession on Linux has no `bytes(for:)`, and an event stream never ends by itself. Every
/// read is bounded (a deadline per call), so a test waits at most what it says.
final class RawHTTPStream {
  private let fd: Int32
  private var raw: [UInt8] = []
  /// The body decoded so far (chunked transfer coding removed), not yet handed out.
  private var body: [UInt8] = []
  private var chunked = false
  private(set) var eof = false
  private(set) var status = 0
  private(set) var headers: [String: String] = [:]

  /// Connects to `base` ("http://127.0.0.1:<port>") and sends the request; reads the head.
  /// `chunkedBody` is sent with `Transfer-Encoding: chunked` (no Content-Length), in 1 KiB chunks.
  init(
    _ base: String, _ path: String, method: String = "GET", headers: [String: String] = [:], chunkedBody: [UInt8]? = nil,
    within limit: Duration = .seconds(10)
  ) throws {
    let hostPort = base.replacingOccurrences(of: "http://", with: "").split(separator: ":")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(hostPort[1])!).bigEndian
    inet_pton(AF_INET, String(hostPort[0]), &address.sin_addr)
    #if canImport(Glibc)
      self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
      self.fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw RawHTTPError.io("connect failed (\(errno))") }
    var text = "\(method) \(path) HTTP/1.1\r\nHost: \(hostPort.joined(separator: ":"))\r\n"
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if chunkedBody != nil { text += "Transfer-Encoding: chunked\r\n" }
    text += "\r\n"
    var bytes = Array(text.utf8)
    if let chunkedBody {
      var rest = chunkedBody[...]
      while !rest.isEmpty {
        let chunk = rest.prefix(1024)
        bytes += Array((String(chunk.count, radix: 16) + "\r\n").utf8) + chunk + Array("\r\n".utf8)
        rest = rest.dropFirst(chunk.count)
      }
      bytes += Array("0\r\n\r\n".utf8)
    }
    guard bytes.withUnsafeBytes({ send(self.fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { throw RawHTTPError.io("send failed") }
    try self.readHead(within: limit)
  }

  deinit { self.close() }

  private var closed = false
  /// Closes the connection, as a browser tab going away does.
  func close() {
    guard !self.closed else { return }
    self.closed = true
    #if canImport(Glibc)
      _ = Glibc.close(self.fd)
    #else
      _ = Darwin.close(self.fd)
    #endif
  }

  func header(_ name: String) -> String? { self.headers[name.lowercased()] }

  /// One poll-bounded read into `raw`; false once the peer closed.
  private func receive(waitingMilliseconds: Int32) -> Bool {
    var descriptor = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
    guard poll(&descriptor, 1, waitingMilliseconds) > 0 else { return true }
    var buffer = [UInt8](repeating: 0, count: 16_384)
    let count = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
    if count <= 0 {
      self.eof = true
      return false
    }
    self.raw += buffer[0..<count]
    return true
  }

  private func readHead(within limit: Duration) throws {
    let deadline = ContinuousClock.now + limit
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    while true {
      if let end = Self.find(separator, in: self.raw) {
        let head = String(decoding: self.raw[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        self.status = Int(head[0].split(separator: " ")[1]) ?? 0
        for line in head.dropFirst() {
          guard let colon = line.firstIndex(of: ":") else { continue }
          self.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        self.chunked = self.header("Transfer-Encoding")?.lowercased() == "chunked"
        self.raw.removeFirst(end + separator.count)
        self.decode()
        return
      }
      guard ContinuousClock.now < deadline, self.receive(waitingMilliseconds: 50) else { throw RawHTTPError.io("no response head") }
    }
  }

  /// Moves complete chunks (or everything, without chunking) from `raw` to `body`.
  private func decode() {
    guard self.chunked else {
      self.body += self.raw
      self.raw = []
      return
    }
    let crlf: [UInt8] = [13, 10]
    while let lineEnd = Self.find(crlf, in: self.raw) {
      let sizeText = String(decoding: self.raw[0..<lineEnd], as: UTF8.self).split(separator: ";")[0]
      guard let size = Int(sizeText, radix: 16), self.raw.count >= lineEnd + 2 + size + 2 else { return }
      self.body += self.raw[(lineEnd + 2)..<(lineEnd + 2 + size)]
      self.raw.removeFirst(lineEnd + 2 + size + 2)
      if size == 0 { self.eof = true }
    }
  }

  /// The next piece of the body ending in `terminator` (without it), or nil when none
  /// arrived within `limit` or the stream ended first.
  func next(until terminator: String, within limit: Duration) async -> String? {
    let separator = Array(terminator.utf8)
    let deadline = ContinuousClock.now + limit
    while true {
      if let end = Self.find(separator, in: self.body) {
        let piece = String(decoding: self.body[0..<end], as: UTF8.self)
        self.body.removeFirst(end + separator.count)
        return piece
      }
      guard ContinuousClock.now < deadline, !self.eof else { return nil }
      if self.receive(waitingMilliseconds: 20) { self.decode() }
      await Task.yield()
    }
  }

  /// The rest of the body until the server closes (bounded).
  func rest(within limit: Duration) async -> String {
    let deadline = ContinuousClock.now + limit
    while !self.eof, ContinuousClock.now < deadline {
      if self.receive(waitingMilliseconds: 20) { self.decode() }
      await Task.yield()
    }
    self.decode()
    defer { self.body = [] }
    return String(decoding: self.body, as: UTF8.self)
  }

  private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) { return start }
    return nil
  }
}

enum RawHTTPError: Error { case io(String) }
