import Crypto
import Foundation

/// Single-use tickets for the Play WebSocket. Browsers can't set headers on a WebSocket, so a
/// signed-in page first asks `POST /api/v1/attempts/play-ticket` (with its bearer token) and
/// then opens `…/play?ticket=…`.
///
/// The gateway holds no business state and runs as several replicas, so the ticket carries
/// what redeeming it needs: it is the bearer token, its expiry and a random nonce sealed with
/// AES-GCM under a key every replica shares (`ticket-secret`). Anyone can hold a ticket but
/// nobody can read the token in it or forge one. Single use is the nonce claimed once in a
/// `TicketLedger`, which is shared by the replicas when it is backed by a shared store.
struct PlayTickets: Sendable {
  /// Why a ticket was refused; the message is the close reason the browser sees.
  struct Refusal: Error, Sendable, Equatable {
    var message: String
  }

  /// What a valid ticket carries.
  struct Contents: Sendable, Equatable {
    var bearerToken: String
    var expiresAt: Date
    var nonce: String
  }

  /// Tickets are versioned by prefix, so a later format can be told apart.
  static let prefix = "pt1."
  /// Bound into every seal: a ticket can't be replayed as some other sealed value of ours.
  private static let associatedData = Data("quizwire.play-ticket.v1".utf8)

  private let key: SymmetricKey
  let ttl: Duration
  let ledger: any TicketLedger

  /// - Parameters:
  ///   - secret: the shared `ticket-secret`; nil makes a random key that only this process
  ///     knows (tickets then work only on the replica that issued them).
  ///   - ttl: how long a ticket is valid (30 s by default).
  init(secret: String?, ttl: Duration, ledger: any TicketLedger) {
    if let secret {
      // The secret is high-entropy (at least 32 characters, checked by the settings), so
      // HKDF only shapes it into a key; it is not a password hash and needs none.
      self.key = HKDF<SHA256>.deriveKey(
        inputKeyMaterial: SymmetricKey(data: Data(secret.utf8)), info: Data("quizwire play tickets".utf8), outputByteCount: 32)
    } else {
      self.key = SymmetricKey(size: .bits256)
    }
    self.ttl = ttl
    self.ledger = ledger
  }

  /// A new ticket for `bearerToken`, valid for `ttl` from `now`.
  func issue(bearerToken: String, now: Date = Date()) throws -> (ticket: String, expiresAt: Date) {
    let expiresAt = now.addingTimeInterval(Double(self.ttl.components.seconds) + Double(self.ttl.components.attoseconds) / 1e18)
    var plain = Data()
    let expiryMs = UInt64(max(0, (expiresAt.timeIntervalSince1970 * 1000).rounded()))
    withUnsafeBytes(of: expiryMs.bigEndian) { plain.append(contentsOf: $0) }
    var nonce = [UInt8](repeating: 0, count: 16)
    var rng = SystemRandomNumberGenerator()
    for i in nonce.indices { nonce[i] = rng.next() }
    plain.append(contentsOf: nonce)
    plain.append(contentsOf: Data(bearerToken.utf8))
    let sealed = try AES.GCM.seal(plain, using: self.key, authenticating: Self.associatedData)
    guard let combined = sealed.combined else { throw Refusal(message: "cannot seal a ticket") }
    return (Self.prefix + Self.base64URL(combined), Date(timeIntervalSince1970: Double(expiryMs) / 1000))
  }

  /// Opens `ticket` without spending it: forged, damaged or expired tickets are refused.
  func open(_ ticket: String, now: Date = Date()) throws(Refusal) -> Contents {
    guard ticket.hasPrefix(Self.prefix), let data = Self.data(base64URL: String(ticket.dropFirst(Self.prefix.count))),
      let box = try? AES.GCM.SealedBox(combined: data),
      let plain = try? AES.GCM.open(box, using: self.key, authenticating: Self.associatedData), plain.count > 24
    else { throw Refusal(message: "the play ticket is not valid (get a new one from POST /api/v1/attempts/play-ticket)") }
    let bytes = [UInt8](plain)
    let expiryMs = bytes[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    let expiresAt = Date(timeIntervalSince1970: Double(expiryMs) / 1000)
    guard now < expiresAt else { throw Refusal(message: "the play ticket has expired (tickets are valid for \(self.ttl))") }
    let nonce = bytes[8..<24].map { String(format: "%02x", $0) }.joined()
    return Contents(bearerToken: String(decoding: bytes[24...], as: UTF8.self), expiresAt: expiresAt, nonce: nonce)
  }

  /// Opens `ticket` and spends it: a second redemption, on any replica that shares the
  /// ledger, is refused.
  func redeem(_ ticket: String, now: Date = Date()) async throws(Refusal) -> Contents {
    let contents = try self.open(ticket, now: now)
    // Kept a little past the expiry: after that the ticket is refused as expired anyway.
    let keep = Duration.milliseconds(Int64(contents.expiresAt.timeIntervalSince(now) * 1000) + 1000)
    let claimed: Bool
    // A digest of the nonce, not the nonce: the store keeps no part of a ticket.
    let key = "play-ticket:" + SHA256.hash(data: Data(contents.nonce.utf8)).map { String(format: "%02x", $0) }.joined()
    do { claimed = try await self.ledger.claimOnce(key, ttl: keep) } catch {
      throw Refusal(message: "the play ticket can't be checked now: \(error)")
    }
    guard claimed else { throw Refusal(message: "the play ticket was already used (tickets are single-use)") }
    return contents
  }

  static func base64URL(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }

  static func data(base64URL text: String) -> Data? {
    guard text.count < 8192 else { return nil }
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    return Data(base64Encoded: base64)
  }
}

/// Claims a key at most once within its time to live: the single use of play tickets.
protocol TicketLedger: Sendable {
  /// True the first time `key` is claimed while it is kept, false after that.
  func claimOnce(_ key: String, ttl: Duration) async throws -> Bool
}

/// The gateway's database is the ledger: on the PostgreSQL every replica shares, a ticket is
/// spent once across all of them; on a replica's own SQLite, once on that replica.
extension GatewayStore: TicketLedger {
  func claimOnce(_ key: String, ttl: Duration) async throws -> Bool {
    try await self.consumeOnce(key: key, ttl: ttl)
  }
}
