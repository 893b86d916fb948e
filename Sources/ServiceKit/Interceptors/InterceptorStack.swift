import GRPCCore
import Logging

/// The server interceptors every service runs, in this order (outermost first):
///
/// 1. request id — the id and `CallInfo` everything after it reports with;
/// 2. tracing — one span per call, continuing the caller's `traceparent`;
/// 3. access log — one JSON line per call, after it ended;
/// 4. metrics — RED metrics and message counts;
/// 5. deadline — a default budget for calls that came without one;
/// 6. auth — the principal and the method's access policy;
/// 7. rate limit — per principal, so it needs auth's answer;
/// 8. validation — field violations before the handler reads a message;
/// 9. error conversion — a handler's error without a status becomes INTERNAL with an error id
///    (logged with the cause), from the handler or its streaming response producer.
///
/// Log, metrics and tracing sit outside auth and rate limiting so refused calls are still
/// seen; rate limiting sits outside validation so a flood of bad requests is still limited.
/// Error conversion is innermost, right around the handler: everything outside it (access
/// log, metrics, tracing) sees the converted INTERNAL, never GRPCCore's UNKNOWN.
public struct ServerInterceptorStack: Sendable {
  public var service: String
  public var logger: Logger
  public var metrics: HostMetrics
  public var tracer: W3CTracer
  public var policies: AccessPolicies
  public var verifier: TokenVerifier?
  public var apiKeys: (any APIKeyChecker)?
  public var rateLimiter: RateLimiter?
  public var deadlines: DeadlineInterceptor
  /// Whose `x-forwarded-for` the rate limiter believes (`RateLimitInterceptor`).
  public var trustedProxies: TrustedProxies

  public init(
    service: String, logger: Logger, metrics: HostMetrics, tracer: W3CTracer, policies: AccessPolicies,
    verifier: TokenVerifier?, apiKeys: (any APIKeyChecker)?, rateLimiter: RateLimiter?, deadlines: DeadlineInterceptor,
    trustedProxies: TrustedProxies = .none
  ) {
    self.trustedProxies = trustedProxies
    self.service = service
    self.logger = logger
    self.metrics = metrics
    self.tracer = tracer
    self.policies = policies
    self.verifier = verifier
    self.apiKeys = apiKeys
    self.rateLimiter = rateLimiter
    self.deadlines = deadlines
  }

  public var interceptors: [any ServerInterceptor] {
    var list: [any ServerInterceptor] = [
      RequestIDInterceptor(),
      ServerTracingInterceptor(tracer: self.tracer),
      AccessLogInterceptor(logger: self.logger, service: self.service),
      MetricsInterceptor(metrics: self.metrics),
      self.deadlines,
      AuthInterceptor(policies: self.policies, verifier: self.verifier, apiKeys: self.apiKeys, logger: self.logger),
    ]
    if let limiter = self.rateLimiter { list.append(RateLimitInterceptor(limiter: limiter, trustedProxies: self.trustedProxies)) }
    list.append(ValidationInterceptor())
    list.append(ErrorConversionInterceptor(logger: self.logger, service: self.service))
    return list
  }
}
