import FramedTransport
import Logging

extension ServiceHost {
  /// Logs, every few seconds while it happens, connections refused at the cap and accepts
  /// failing (out of descriptors): both are otherwise silent.
  func watchListeners() async {
    let listeners = [("framed", self.framedTransport.connections), ("grpc", self.grpcConnections)]
    var seen = listeners.map { ($0.1.rejected, $0.1.shed, $0.1.acceptErrors) }
    while !Task.isCancelled {
      try? await Task.sleep(for: .seconds(5))
      for (index, (name, limiter)) in listeners.enumerated() {
        let now = (limiter.rejected, limiter.shed, limiter.acceptErrors)
        defer { seen[index] = now }
        let metadata: Logger.Metadata = [
          "service": .string(self.name), "listener": .string(name), "open": .stringConvertible(limiter.open),
          "limit": .stringConvertible(limiter.limit),
        ]
        if now.0 > seen[index].0 {
          self.logger.warning(
            "connection limit reached; closing new connections", metadata: metadata.merging(["closed": .stringConvertible(now.0 - seen[index].0)]) { a, _ in a }
          )
        }
        if now.2 > seen[index].2 {
          let more: Logger.Metadata = [
            "error": .string(limiter.lastAcceptError ?? "?"), "failed_accepts": .stringConvertible(now.2 - seen[index].2),
            "closed": .stringConvertible(now.1 - seen[index].1),
          ]
          self.logger.warning("accepting connections fails; closing new connections", metadata: metadata.merging(more) { a, _ in a })
        }
      }
    }
  }
}
