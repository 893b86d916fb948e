import FramedWire
import NIOCore

/// Tunables of one framed-wire connection, shared by clients and servers.
public struct FramedConnectionConfig: Sendable {
  /// What we accept from the peer (sent in our SETTINGS).
  public var settings = ConnectionSettings()
  /// Ping after this long without receiving anything; `nil` disables keepalive pings.
  public var keepaliveInterval: TimeAmount? = .seconds(30)
  /// A ping unanswered this long means the peer is dead.
  public var keepaliveTimeout: TimeAmount = .seconds(10)
  /// How long the peer has to send its preface and SETTINGS.
  public var handshakeTimeout: TimeAmount = .seconds(10)
  /// Server drain: how long in-flight calls may run after GOAWAY before they are cancelled.
  public var drainGrace: TimeAmount = .seconds(10)
  /// Server drain: how long to wait for the PING ACK between the two GOAWAYs.
  public var drainPingTimeout: TimeAmount = .seconds(5)
  /// Bytes of message frames written per pass before yielding to the socket.
  public var writeBatchBytes = 256 * 1024
  /// Compress messages only from this size up; smaller ones gain nothing.
  public var compressionMinBytes = 64

  public init() {}
}
