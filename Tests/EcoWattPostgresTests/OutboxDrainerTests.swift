import EcoWattTestSupport
import Testing

@testable import EcoWattPostgres

/// One instance at a time drains the shared MQTT outbox (issue 22), through a session advisory lock; the others ask
/// again and again and take over when it goes.
@Suite struct OutboxDrainerTests {
    /// Asks until an attempt took the lock.
    static func waitUntilHolds(_ drainer: OutboxDrainer, within limit: Duration = .seconds(10)) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if await drainer.holds() { return true }
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
            #expect(await drainer.holds(), "the first attempt's answer")
            #expect(await drainer.holds(), "kept")
            for attempt in 0..<100 {
                let held = await other.holds()
                try #require(!held, "attempt \(attempt): two drainers at once")
            }
            drainer.stop()
            #expect(await !drainer.holds(), "a stopped drainer hands out nothing")
            #expect(try await Self.waitUntilHolds(other), "the stopped drainer's lock was released; the other took it")
            #expect(await !drainer.holds(), "and does not ask again")
            other.stop()
        }
    }

    /// The drain loop asks on every round: an attempt that cannot get a connection (the pool is busy) must not hold it
    /// up. It answers "not now" within its bound, and the attempt takes the lock once a connection is free.
    @Test(.enabled(if: PostgresServer.enabled))
    func anAttemptThatWaitsForAConnectionAnswersWithinItsBoundAndTakesTheLockLater() async throws {
        try await PostgresTestDatabase.withURL { url in
            let database = EcoWattPostgresDatabase(url: try PostgresURL(parsing: url), maximumConnections: 1, logger: PostgresTestDatabase.logger)
            try await database.withRunning {
                let drainer = OutboxDrainer(database: database, answerWithin: .milliseconds(300))
                try await database.client.withConnection { _ in
                    let start = ContinuousClock.now
                    #expect(await !drainer.holds(), "no connection to ask on")
                    #expect(ContinuousClock.now - start < .seconds(5), "answered within its bound, not when a connection came")
                }
                #expect(try await Self.waitUntilHolds(drainer), "the waiting attempt took the lock once the connection was free")
                drainer.stop()
            }
        }
    }
}
