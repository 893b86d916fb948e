import ServiceKit
import Tracing
import XCTest

/// The tracer's in-memory sink keeps the most recent spans, oldest first, and no more.
final class SpanSinkTests: XCTestCase {
  func testKeepsTheLastSpansInOrder() {
    let tracer = W3CTracer(sink: SpanSink(capacity: 3))
    for i in 0..<7 {
      let span = tracer.startSpan("op\(i)", context: .topLevel, ofKind: .internal, at: DefaultTracerClock.now)
      span.end()
    }
    XCTAssertEqual(tracer.sink.finished.map(\.operationName), ["op4", "op5", "op6"])
  }
}
