import GRPCCore
import ServiceKit
import XCTest

/// `.scope(…)`: principals that act within scopes (API keys, OAuth clients, tokens a client
/// holds for a user) need the scope; plain sign-ins and the suite's services don't.
final class ScopePolicyTests: XCTestCase {
  func testScopeIsRequiredOnlyOfPrincipalsThatActWithinScopes() {
    let policy = AccessPolicy.scope("quiz:write")
    func decide(_ principal: Principal?) -> RPCError.Code? { AccessPolicies.decide(policy, principal: principal)?.code }

    XCTAssertEqual(decide(nil), .unauthenticated)
    XCTAssertNil(decide(Principal(kind: .user, subject: "u-1", roles: ["user"])), "a signed-in user")
    XCTAssertNil(decide(Principal(kind: .service, subject: "scoring", roles: ["service"])), "the suite's services")
    XCTAssertEqual(decide(Principal(kind: .apiKey, subject: "k-1", scopes: ["quiz:read"], keyOwner: "u-1")), .permissionDenied)
    XCTAssertNil(decide(Principal(kind: .apiKey, subject: "k-1", scopes: ["quiz:write"], keyOwner: "u-1")))
    XCTAssertEqual(decide(Principal(kind: .user, subject: "u-1", scopes: [], delegatedClient: "cl_app")), .permissionDenied, "delegated token")
    XCTAssertNil(decide(Principal(kind: .user, subject: "u-1", scopes: ["quiz:write"], delegatedClient: "cl_app")))
    XCTAssertEqual(decide(Principal(kind: .client, subject: "cl_partner")), .permissionDenied)
  }

  func testTheUserAPrincipalActsFor() {
    XCTAssertEqual(Principal(kind: .user, subject: "u-1").userID, "u-1")
    XCTAssertEqual(Principal(kind: .user, subject: "u-1", delegatedClient: "cl_app").userID, "u-1")
    XCTAssertEqual(Principal(kind: .apiKey, subject: "k-1", keyOwner: "u-2").userID, "u-2", "an API key acts for its owner")
    XCTAssertNil(Principal(kind: .service, subject: "scoring").userID)
    XCTAssertNil(Principal(kind: .client, subject: "cl_partner").userID)
  }
}
