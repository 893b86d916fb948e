import XCTest

@testable import FramedWire

final class ReceiveWindowTests: XCTestCase {
  func testUpdatesAreBatchedAtHalfTheWindow() {
    var w = ReceiveWindow(initial: 1000)
    XCTAssertTrue(w.receive(400))
    XCTAssertNil(w.release(400))
    XCTAssertTrue(w.receive(200))
    XCTAssertEqual(w.release(200), 600)
    XCTAssertEqual(w.available, 1000)
  }

  func testOverrunIsDetected() {
    var w = ReceiveWindow(initial: 100)
    XCTAssertFalse(w.receive(101))
    XCTAssertTrue(w.receive(100))
    XCTAssertFalse(w.receive(1))
  }

  func testSendWindowOverflowIsAnError() {
    var window = Int(Int32.max) - 10
    XCTAssertFalse(applyWindowIncrement(&window, 11))
    XCTAssertTrue(applyWindowIncrement(&window, 10))
  }
}
