import EcoWattTestSupport
import Testing

@testable import EcoWattPostgres

/// One instance at a time drains the shared MQTT outbox (issue 22), through a session advisory lock; the others ask
/// again and again and take over when it goes.
@Suite struct OutboxDrainerTests {
    /// `holds()` answers at once and starts an attempt when it may; `true` once an attempt took the lock.
    static func waitUntilHolds(_ drainer: OutboxDrainer, within limit: Duration = .seconds(10)) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if drainer.holds() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    /// Many failed attempts (the lock is held elsewhere) leave the instance able to try again; a stopped drainer gives
    /// the lock back on its lease's connection (it used to skip the unlock when cancelled, and the pooled connection
    /// kept the lock: no instance could take it while this one ran) and hands out nothing more.
    @Test(.enabled(if: PostgresServer.enabled))
    func anInstanceThatFailedToTakeTheLockManyTimesTakesItOverWhenTheDrainerStops() async throws {
        try await PostgresTestDatabase.with(instances: 2) { instances in
            let drainer = OutboxDrainer(database: instances[0])
            let other = OutboxDrainer(database: instances[1], retryEvery: .zero)
            #expect(try await Self.waitUntilHolds(drainer))
            #expect(drainer.holds(), "kept")
            for attempt in 0..<100 {
                try #require(!other.holds(), "attempt \(attempt): two drainers at once")
                try await Task.sleep(for: .milliseconds(2))
            }
            drainer.stop()
            #expect(!drainer.holds(), "a stopped drainer hands out nothing")
            #expect(try await Self.waitUntilHolds(other), "the stopped drainer's lock was released; the other took it")
            #expect(!drainer.holds(), "and does not ask again")
            other.stop()
        }
    }
}
