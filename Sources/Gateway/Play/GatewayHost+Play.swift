import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import ServiceKit

extension GatewayHost {
  /// The Play socket and tickets, or nil when no scoring target is configured.
  func makePlayEndpoints() -> PlayEndpoints? {
    guard let scoring = self.upstreams.clients["scoring"] else { return nil }
    if self.settings.ticketSecret == nil {
      self.logger.notice("ticket-secret is not set: play tickets are sealed with a random key and work only on this replica")
    }
    let tickets = PlayTickets(secret: self.settings.ticketSecret?.reveal(), ttl: self.settings.playTicketTTL, ledger: self.store)
    return PlayEndpoints(
      bridge: PlayBridge(client: scoring, schema: self.routes.schema, stats: self.playSockets), tickets: tickets,
      cors: CORSPolicy(origins: self.settings.corsOrigins), verifier: self.verifier, tracer: W3CTracer(), logger: self.logger)
  }

  /// HTTP/1.1 with the WebSocket upgrade for the Play path. Auto-ping every 30 s notices a
  /// browser that vanished without a close (its RPC is then cancelled); text must be UTF-8.
  static func apiServer(_ play: PlayEndpoints?) -> HTTPServerBuilder {
    .http1WebSocketUpgrade(
      configuration: .init(ws: .init(maxFrameSize: PlayBridge.maxMessageSize, autoPing: .enabled(timePeriod: .seconds(30)), validateUTF8: true))
    ) { head, channel, _ in
      guard let play else { return .dontUpgrade }
      return await play.shouldUpgrade(head, channel: channel)
    }
  }
}
