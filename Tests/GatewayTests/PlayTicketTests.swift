import Foundation
import GRPCCore
import NIOWebSocket
import QuizwireProtos
import TestSupport
import XCTest

@testable import Gateway

/// Play tickets, close reasons and frame decoding without sockets.
final class PlayTicketTests: XCTestCase {
  let secret = String(repeating: "k", count: 40)

  func testATicketOpensOnAnyReplicaWithTheSecretAndOnlyBeforeItsExpiry() async throws {
    try await TestDatabases.each { db in
      let store = GatewayStore(database: db)
      try await store.migrate()
      let now = Date(timeIntervalSince1970: 1_800_000_000)
      let issuer = PlayTickets(secret: self.secret, ttl: .seconds(30), ledger: store)
      let (ticket, expiresAt) = try issuer.issue(bearerToken: "eyJ.token", now: now)
      XCTAssertEqual(expiresAt, now.addingTimeInterval(30))
      XCTAssertTrue(ticket.hasPrefix("pt1."))
      XCTAssertFalse(ticket.contains("eyJ"), "the token is sealed, not readable")
      // Another replica with the same secret opens it; one with another secret doesn't.
      let replica = PlayTickets(secret: self.secret, ttl: .seconds(30), ledger: store)
      let opened = try replica.open(ticket, now: now.addingTimeInterval(29.9))
      XCTAssertEqual(opened.bearerToken, "eyJ.token")
      XCTAssertEqual(opened.nonce.count, 32)
      let stranger = PlayTickets(secret: String(repeating: "x", count: 40), ttl: .seconds(30), ledger: store)
      XCTAssertThrowsError(try stranger.open(ticket, now: now)) { XCTAssertTrue("\($0)".contains("not valid")) }
      XCTAssertThrowsError(try replica.open(ticket, now: now.addingTimeInterval(30))) { XCTAssertTrue("\($0)".contains("expired")) }
      // A changed character anywhere fails the seal.
      var characters = Array(ticket)
      characters[10] = characters[10] == "A" ? "B" : "A"
      XCTAssertThrowsError(try replica.open(String(characters), now: now))
      XCTAssertThrowsError(try replica.open("pt1.", now: now))
      XCTAssertThrowsError(try replica.open("not-a-ticket", now: now))
      // Two tickets for one token differ (their nonces).
      XCTAssertNotEqual(try issuer.issue(bearerToken: "eyJ.token", now: now).ticket, ticket)
    }
  }

  /// Two replicas (each its own store object) on one database: a ticket issued by one is
  /// redeemed once, on either, never twice.
  func testATicketIsRedeemedOnceAcrossReplicasSharingTheDatabase() async throws {
    try await TestDatabases.each { db in
      let storeA = GatewayStore(database: db)
      let storeB = GatewayStore(database: db)
      try await storeA.migrate()
      try await storeB.migrate()
      let replicaA = PlayTickets(secret: self.secret, ttl: .seconds(30), ledger: storeA)
      let replicaB = PlayTickets(secret: self.secret, ttl: .seconds(30), ledger: storeB)
      let (ticket, _) = try replicaA.issue(bearerToken: "t")
      let (other, _) = try replicaA.issue(bearerToken: "t")
      let redeemed = try await replicaB.redeem(ticket)
      XCTAssertEqual(redeemed.bearerToken, "t")
      for replica in [replicaA, replicaB] {
        do throws(PlayTickets.Refusal) {
          _ = try await replica.redeem(ticket)
          XCTFail("a ticket is single-use")
        } catch {
          XCTAssertTrue(error.message.contains("already used"), error.message)
        }
      }
      // Another ticket of the same token is its own.
      let second = try await replicaA.redeem(other)
      XCTAssertEqual(second.bearerToken, "t")
    }
  }

  func testCloseCodesAndReasonsFitTheFrame() {
    let long = String(repeating: "é", count: 100)  // 200 bytes of UTF-8
    let close = PlayClose.rpc(RPCError(code: .notFound, message: long))
    XCTAssertEqual(close.code, WebSocketErrorCode(codeNumber: 4005))
    XCTAssertEqual(close.truncatedReason.utf8.count, 122)
    XCTAssertTrue(long.hasPrefix(close.truncatedReason))
    XCTAssertEqual(PlayClose.rpc(RPCError(code: .internalError, message: "boom")).code, .unexpectedServerError)
    XCTAssertEqual(PlayClose.invalidFrame("x").code, WebSocketErrorCode(codeNumber: 4003))
    XCTAssertEqual(PlayClose(code: .normalClosure, reason: "short").truncatedReason, "short")
  }

  func testFramesAreDecodedStrictly() throws {
    let schema = try RouteTable().schema
    func decode(_ text: String) -> Result<Scoring_V1_PlayRequest, PlayClose> { PlayBridge.decode(.text(text), schema: schema) }
    XCTAssertEqual(try decode(#"{"start":{"quizId":"q1"}}"#).get().start.quizID, "q1")
    XCTAssertEqual(try decode(#"{"answer":{"questionId":"q","choiceIds":["a","b"]}}"#).get().answer.choiceIds, ["a", "b"])
    for bad in ["", "[]", "{", #"{"start":{"quizID":"q"}}"#, #"{"answer":{"choiceIds":[1]}}"#, #"{"nope":{}}"#] {
      guard case .failure(let close) = decode(bad) else { return XCTFail("accepted \(bad)") }
      XCTAssertEqual(close.code, WebSocketErrorCode(codeNumber: 4003), bad)
      XCTAssertTrue(close.reason.hasPrefix("invalid PlayRequest"), close.reason)
    }
    guard case .failure(let binary) = PlayBridge.decode(.binary(.init()), schema: schema) else { return XCTFail("binary accepted") }
    XCTAssertEqual(binary.code, .unacceptableData)
  }
}
