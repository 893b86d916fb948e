import DequeModule
import Foundation
import Instrumentation
import NIOConcurrencyHelpers
import ServiceContextModule
import Tracing
import W3CTraceContext

enum TraceContextKey: ServiceContextKey {
  typealias Value = TraceContext
  static var nameOverride: String? { "traceparent" }
}

extension ServiceContext {
  /// The W3C trace context of the current span.
  public var traceContext: TraceContext? {
    get { self[TraceContextKey.self] }
    set { self[TraceContextKey.self] = newValue }
  }
}

/// A finished span, as handed to a `SpanSink`.
public struct FinishedSpan: Sendable {
  public var operationName: String
  public var kind: SpanKind
  /// The ids as values; their hex text is made only when asked for (most kept spans are
  /// never looked at, and formatting three ids per call was a visible cost).
  var trace: TraceContext
  var parent: SpanID?
  public var traceID: String { self.trace.traceID.description }
  public var spanID: String { self.trace.spanID.description }
  public var parentSpanID: String? { self.parent?.description }
  public var startNanos: UInt64
  public var endNanos: UInt64
  public var status: SpanStatus?
  public var attributes: SpanAttributes
  public var errors: [String]
}

/// The export point of tracing: every span `W3CTracer` finishes arrives here exactly once, in
/// `record(_:)`, as a `FinishedSpan` (ids, parent, timing, status, attributes).
///
/// An exporter plugs in here — swift-otel's OTLP exporter or any other backend: forward each
/// span from `record(_:)` (converted to the exporter's span type, batched off this path, since
/// `record` runs where the call ended); nothing in the tracer or the interceptors changes. Until
/// one is attached, the sink only keeps the most recent `capacity` spans in memory, for tests
/// and debugging.
public final class SpanSink: Sendable {
  /// A ring: dropping the oldest span is O(1). (An array's `removeFirst` moved all 1,023 kept
  /// spans on every call once full — a few percent of every service's CPU under load.)
  private let spans = NIOLockedValueBox<Deque<FinishedSpan>>([])
  private let capacity: Int
  public init(capacity: Int = 1024) { self.capacity = max(1, capacity) }
  func record(_ span: FinishedSpan) {
    self.spans.withLockedValue {
      while $0.count >= self.capacity { $0.removeFirst() }
      $0.append(span)
    }
  }
  /// The kept spans, oldest first.
  public var finished: [FinishedSpan] { self.spans.withLockedValue { Array($0) } }
}

/// A swift-distributed-tracing `Tracer` that speaks W3C Trace Context: it continues the
/// caller's `traceparent` (new span id, same trace id), starts a new trace when there is
/// none, and injects `traceparent`/`tracestate` into outgoing carriers.
public struct W3CTracer: Tracer {
  public let sink: SpanSink

  public init(sink: SpanSink = SpanSink()) { self.sink = sink }

  public func startSpan<Instant: TracerInstant>(
    _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
    at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
  ) -> W3CSpan {
    var context = context()
    let parent = context.traceContext
    let trace = TraceContext(
      traceID: parent?.traceID ?? .random(), spanID: .random(),
      flags: parent?.flags ?? .sampled, state: parent?.state ?? TraceState())
    context.traceContext = trace
    return W3CSpan(
      operationName: operationName, kind: kind, context: context, trace: trace,
      parentSpanID: parent?.spanID, start: instant().nanosecondsSinceEpoch, sink: self.sink)
  }

  public func forceFlush() {}

  public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
  where Extract.Carrier == Carrier {
    guard let parent = extractor.extract(key: "traceparent", from: carrier) else { return }
    let state = extractor.extract(key: "tracestate", from: carrier)
    // A malformed traceparent is ignored (a new trace starts), as the W3C spec asks.
    if let trace = try? TraceContext(traceParentHeaderValue: parent, traceStateHeaderValue: state) {
      context.traceContext = trace
    }
  }

  public func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
  where Inject.Carrier == Carrier {
    guard let trace = context.traceContext else { return }
    injector.inject(trace.traceParentHeaderValue, forKey: "traceparent", into: &carrier)
    if let state = trace.traceStateHeaderValue { injector.inject(state, forKey: "tracestate", into: &carrier) }
  }
}

/// A span of `W3CTracer`.
public final class W3CSpan: Tracing.Span {
  private struct State {
    var operationName: String
    var attributes: SpanAttributes = [:]
    var status: SpanStatus?
    var errors: [String] = []
    var ended = false
  }
  public let context: ServiceContext
  public let trace: TraceContext
  private let kind: SpanKind
  private let parentSpanID: SpanID?
  private let start: UInt64
  private let sink: SpanSink
  private let state: NIOLockedValueBox<State>

  init(operationName: String, kind: SpanKind, context: ServiceContext, trace: TraceContext, parentSpanID: SpanID?, start: UInt64, sink: SpanSink) {
    self.state = NIOLockedValueBox(State(operationName: operationName))
    self.kind = kind
    self.context = context
    self.trace = trace
    self.parentSpanID = parentSpanID
    self.start = start
    self.sink = sink
  }

  public var operationName: String {
    get { self.state.withLockedValue { $0.operationName } }
    set { self.state.withLockedValue { $0.operationName = newValue } }
  }

  public var attributes: SpanAttributes {
    get { self.state.withLockedValue { $0.attributes } }
    set { self.state.withLockedValue { $0.attributes = newValue } }
  }

  public var isRecording: Bool { self.state.withLockedValue { !$0.ended } }

  public func setStatus(_ status: SpanStatus) { self.state.withLockedValue { $0.status = status } }
  public func addEvent(_ event: SpanEvent) {}
  public func addLink(_ link: SpanLink) {}

  public func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
    self.state.withLockedValue { $0.errors.append(String(describing: type(of: error))) }
  }

  public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
    let end = instant().nanosecondsSinceEpoch
    guard
      let state = self.state.withLockedValue({ s -> State? in
        guard !s.ended else { return nil }
        s.ended = true
        return s
      })
    else { return }
    self.sink.record(
      FinishedSpan(
        operationName: state.operationName, kind: self.kind, trace: self.trace, parent: self.parentSpanID, startNanos: self.start, endNanos: end,
        status: state.status, attributes: state.attributes, errors: state.errors))
  }
}
