import CoreMetrics
import ServiceKit
import XCTest

/// Per-call metrics reuse one handle per label set, and still land in the right series.
final class MetricHandlesTests: XCTestCase {
  func testOneHandlePerLabelSetCountingIntoItsSeries() {
    let metrics = HostMetrics()
    let a = metrics.handles.counter("calls_total", [("method", "A"), ("code", "OK")])
    XCTAssertTrue(a === metrics.handles.counter("calls_total", [("method", "A"), ("code", "OK")]))
    XCTAssertFalse(a === metrics.handles.counter("calls_total", [("method", "B"), ("code", "OK")]))
    a.increment()
    metrics.handles.counter("calls_total", [("method", "A"), ("code", "OK")]).increment()
    metrics.handles.counter("calls_total", [("method", "B"), ("code", "OK")]).increment()
    metrics.handles.timer("took_seconds", [("method", "A")]).record(duration: .milliseconds(3))
    let text = metrics.exposition()
    XCTAssertTrue(text.contains(#"calls_total{method="A",code="OK"} 2"#), text)
    XCTAssertTrue(text.contains(#"calls_total{method="B",code="OK"} 1"#), text)
    XCTAssertTrue(text.contains(#"took_seconds_count{method="A"} 1"#), text)
  }
}
