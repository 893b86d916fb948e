import FramedWire
import GRPCCore
import NIOCore
import NIOPosix
import NIOSSL

/// One established client connection to one replica.
final class ClientConnection: Sendable {
  let channel: any Channel
  let commands: ConnectionCommands
  let status: ConnectionStatus
  let handler: NIOLoopBound<ClientConnectionHandler>
  let remote: String
  let local: String

  private init(channel: any Channel, commands: ConnectionCommands, status: ConnectionStatus, handler: NIOLoopBound<ClientConnectionHandler>) {
    self.channel = channel
    self.commands = commands
    self.status = status
    self.handler = handler
    self.remote = FramedConnectionHandler.peerDescription(channel.remoteAddress)
    self.local = FramedConnectionHandler.peerDescription(channel.localAddress)
  }

  /// Connects, exchanges prefaces and SETTINGS, and returns once the connection is usable.
  static func connect(
    to target: FramedTarget, config: FramedConnectionConfig, tls: NIOSSLContext?, serverHostname: String?,
    connectTimeout: TimeAmount, group: any EventLoopGroup
  ) async throws -> ClientConnection {
    let loop = group.next()
    let commands = ConnectionCommands(eventLoop: loop)
    let status = ConnectionStatus()
    // Made here, used only on `loop` from now on: the box carries it there.
    let handler = NIOLoopBoundBox.makeBoxSendingValue(
      ClientConnectionHandler(config: config, commands: commands, status: status), eventLoop: loop)
    let bootstrap = ClientBootstrap(group: loop)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .connectTimeout(connectTimeout)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          if let tls { try sync.addHandler(FramedTLS.clientHandler(tls, serverHostname: serverHostname ?? target.host)) }
          try sync.addHandler(FrameReader(settings: config.settings))
          try sync.addHandler(handler.value)
        }
      }
    let channel = try await bootstrap.connect(host: target.host, port: target.port).get()
    let bound = try await loop.submit { NIOLoopBound(handler.value, eventLoop: loop) }.get()
    do {
      try await status.waitUntilReady()
    } catch {
      channel.close(promise: nil)
      throw error
    }
    return ClientConnection(channel: channel, commands: commands, status: status, handler: bound)
  }

  /// Sends GOAWAY once idle and closes; in-flight calls finish first.
  func closeGracefully() {
    let handler = self.handler
    self.channel.eventLoop.execute { handler.value.clientClose() }
  }

  var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }
}

/// A replica address.
public struct FramedTarget: Hashable, Sendable, CustomStringConvertible {
  public var host: String
  public var port: Int
  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Parses "host:port" (IPv6 as "[::1]:port").
  public init?(_ text: String) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
      return nil
    }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { return nil }
    self.host = host
    self.port = port
  }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
