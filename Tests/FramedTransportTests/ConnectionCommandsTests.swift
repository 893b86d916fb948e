import DequeModule
import FramedWire
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import XCTest

@testable import FramedTransport

final class ConnectionCommandsTests: XCTestCase {
  /// Many hand-offs in a row cost the same each: the sink closure once grew two
  /// reabstraction thunks per drain, so each drain was slower than the last and a long-lived
  /// connection would eventually overflow its stack. 300k drains would nest 600k thunks.
  func testDrainCostDoesNotGrowWithUse() throws {
    let loop = EmbeddedEventLoop()
    let commands = ConnectionCommands(eventLoop: loop)
    let performed = NIOLockedValueBox(0)
    commands.setSink { batch in performed.withLockedValue { $0 += batch.count } }
    let stream = FramedStream<RPCRequestPart<FramedBytes>>(connection: commands, creditThreshold: 1, writeLimit: 1)
    let rounds = 300_000
    for _ in 0..<rounds {
      commands.send(.credit(stream, 1))
      loop.run()
    }
    XCTAssertEqual(performed.withLockedValue { $0 }, rounds)
  }

  func testBatchesCommandsSentBeforeTheLoopRuns() throws {
    let loop = EmbeddedEventLoop()
    let commands = ConnectionCommands(eventLoop: loop)
    let batches = NIOLockedValueBox<[Int]>([])
    commands.setSink { batch in batches.withLockedValue { $0.append(batch.count) } }
    let stream = FramedStream<RPCRequestPart<FramedBytes>>(connection: commands, creditThreshold: 1, writeLimit: 1)
    for _ in 0..<5 { commands.send(.credit(stream, 1)) }
    loop.run()
    commands.send(.credit(stream, 1))
    loop.run()
    XCTAssertEqual(batches.withLockedValue { $0 }, [5, 1])
    XCTAssertEqual(commands.close().count, 0)
    XCTAssertFalse(commands.send(.credit(stream, 1)), "refused once closed")
  }
}
