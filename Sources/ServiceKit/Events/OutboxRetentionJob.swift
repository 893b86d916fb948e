import Storage

/// The outbox's retention as a recurring job (`outbox.retention`, hourly) of every module
/// that serves event feeds: see `OutboxRetention.purge` for what goes.
public enum OutboxRetentionJob {
  public static let kind = "outbox.retention"
  public static let recurring = RecurringJob(kind: kind, every: .seconds(3600))

  public static let keys: [ConfigKey] = [
    ConfigKey("outbox-retention-days", "Event feeds: days an event stays once every consumer group acknowledged it (default 7)."),
    ConfigKey("outbox-max-retention-days", "Event feeds: days an event stays at most, acknowledged or not (default 30)."),
  ]

  /// The policy from `--outbox-retention-days` and `--outbox-max-retention-days`.
  public static func policy(layers: ConfigLayers) throws -> OutboxRetention.Policy {
    var policy = OutboxRetention.Policy()
    let window = try layers.int("outbox-retention-days", default: 7, in: 1...3650)
    let maximum = try layers.int("outbox-max-retention-days", default: 30, in: 1...3650)
    guard maximum >= window else {
      throw ConfigError(key: "outbox-max-retention-days", origin: nil, reason: "must be at least outbox-retention-days (\(window))")
    }
    policy.window = .seconds(window * 86_400)
    policy.maximumWindow = .seconds(maximum * 86_400)
    return policy
  }

  public static func handler(topics: [EventTopic], policy: OutboxRetention.Policy) -> JobHandler {
    JobHandler(kind: Self.kind) { _, uow in
      try await OutboxRetention.purge(topics: topics, policy: policy, in: uow)
    }
  }
}
