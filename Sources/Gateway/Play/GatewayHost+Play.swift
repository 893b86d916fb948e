import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import NIOSSL
import ServiceKit
import Synchronization

extension GatewayHost {
  /// The Play socket and tickets, or nil when no scoring target is configured.
  func makePlayEndpoints(rateLimiter: GatewayRateLimiter?) -> PlayEndpoints? {
    guard let scoring = self.upstreams.clients["scoring"] else { return nil }
    if self.settings.ticketSecret == nil {
      self.logger.notice("ticket-secret is not set: play tickets are sealed with a random key and work only on this replica")
    }
    self.exportPlayMetrics()
    let tickets = PlayTickets(secret: self.settings.ticketSecret?.reveal(), ttl: self.settings.playTicketTTL, ledger: self.store)
    return PlayEndpoints(
      bridge: PlayBridge(client: scoring, schema: self.routes.schema, stats: self.playSockets), tickets: tickets,
      cors: CORSPolicy(origins: self.settings.corsOrigins), verifier: self.verifier, tracer: W3CTracer(), logger: self.logger,
      rateLimiter: rateLimiter)
  }

  /// HTTP/1.1 with the WebSocket upgrade for the Play path. Auto-ping every 30 s notices a
  /// browser that vanished without a close (its RPC is then cancelled); text must be UTF-8. A
  /// first request that doesn't parse is answered 400 and closed (`APIChildChannel`).
  /// With `tls` (PEM chain and key files) the port speaks HTTPS only.
  /// `requestHeadTimeout`: a connection must send a complete request head within it (else it
  /// is closed); `idleTimeout`: a keep-alive connection idle between requests, or a request
  /// whose head or body stops arriving, is closed after it (Hummingbird's HTTP/1 handler; an
  /// answer being written — an event stream — never counts as idle).
  static func apiServer(
    _ play: PlayEndpoints?, tls: (certificate: String, key: String)? = nil, requestHeadTimeout: Duration = .seconds(10),
    idleTimeout: Duration = .seconds(60)
  ) throws -> HTTPServerBuilder {
    let tlsConfiguration = try tls.map { tls in
      // A file that can't be read is a setting's error: it names the key and the path.
      let chain: [NIOSSLCertificate]
      do { chain = try NIOSSLCertificate.fromPEMFile(tls.certificate) } catch {
        throw ConfigError(key: "tls-cert", origin: nil, reason: "cannot read a PEM certificate chain from \"\(tls.certificate)\": \(error)")
      }
      let key: NIOSSLPrivateKey
      do { key = try NIOSSLPrivateKey(file: tls.key, format: .pem) } catch {
        throw ConfigError(key: "tls-key", origin: nil, reason: "cannot read a PEM private key from \"\(tls.key)\": \(error)")
      }
      return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }
    return HTTPServerBuilder { responder in
      let http = APIChildChannel(
        base: HTTP1WebSocketUpgradeChannel(
          responder: responder,
          configuration: .init(
            http1: .init(idleTimeout: .nanoseconds(Int64(idleTimeout / .nanoseconds(1)))),
            ws: .init(maxFrameSize: PlayBridge.maxMessageSize, autoPing: .enabled(timePeriod: .seconds(30)), validateUTF8: true))
        ) { head, channel, _ in
          guard let play else { return .dontUpgrade }
          return await play.shouldUpgrade(head, channel: channel)
        }, firstRequestTimeout: .nanoseconds(Int64(requestHeadTimeout / .nanoseconds(1))))
      guard let tlsConfiguration else { return http }
      return try TLSChannel(http, tlsConfiguration: tlsConfiguration)
    }
  }

  /// `gateway_play_sockets_open`, `gateway_play_frames_in_flight`, `gateway_play_bytes_in_flight`
  /// and `gateway_play_frames_sent_total` on the admin port's `/metrics`.
  private func exportPlayMetrics() {
    let registry = self.metrics.registry
    let open = registry.makeGauge(name: "gateway_play_sockets_open", help: "WebSockets bridged to a Play RPC now.")
    let frames = registry.makeGauge(name: "gateway_play_frames_in_flight", help: "Play events taken from the RPC, not yet taken by the socket.")
    let bytes = registry.makeGauge(name: "gateway_play_bytes_in_flight", help: "Their bytes.")
    let sent = registry.makeCounter(name: "gateway_play_frames_sent_total", help: "Play events written to sockets.")
    let stats = self.playSockets
    let counted = Mutex(0)
    self.metrics.onScrape("gateway.play") {
      open.set(Double(stats.openSockets))
      frames.set(Double(stats.framesInFlight))
      bytes.set(Double(stats.bytesInFlight))
      let now = stats.framesSent
      sent.increment(
        by: Int64(
          counted.withLock { before in
            defer { before = now }
            return now - before
          }))
    }
  }
}
