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
  /// How long a closing connection waits for its last frames (TRAILERS, GOAWAY) to leave
  /// before it closes anyway.
  public var closeTimeout: TimeAmount = .seconds(2)
  /// Bytes of message frames written per pass before yielding to the socket.
  public var writeBatchBytes = 256 * 1024
  /// Memory one connection's queued output may take in user space (`WriteBudget`) before the
  /// writers of its streams wait. Queued messages move to the socket only while the channel is
  /// writable, so a peer that stops reading stops every writer on the connection here (each
  /// stream may still queue one message beyond it: a stalled stream can't block the others).
  public var maxQueuedBytes = 256 * 1024
  /// When the channel stops taking writes (`high`) and takes them again (`low`): NIO's
  /// outbound buffer, on top of the socket's own.
  public var writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1024, high: 128 * 1024)
  /// Compress messages only from this size up; smaller ones gain nothing.
  public var compressionMinBytes = 64

  public init() {}
}
