import Logging
import PostgresNIO
import Synchronization

/// Makes one instance at a time the drainer of the shared MQTT outbox (issue 22): it holds a session advisory lock on a
/// connection of its own for as long as it lives. When that instance dies its connection closes, PostgreSQL releases
/// the lock, and the next instance that asks takes it over (each asks at most every 2 s). Messages a dead drainer
/// published but had not deleted are published again by the next: at least once, as on one instance.
final class OutboxDrainer: Sendable {
    private struct State {
        var held = false
        var stopped = false
        /// The attempt (and, once the lock is taken, the lease that keeps it), created and stored under the lock.
        var task: Task<Void, Never>?
        var lastTry: ContinuousClock.Instant?
        /// When the attempt in flight started, until PostgreSQL answered it.
        var askingSince: ContinuousClock.Instant?
        var reportedSlowAttempt = false
        var reportedStandby = false
    }

    private let database: EcoWattPostgresDatabase
    private let state = Mutex(State())
    private let retryEvery: Duration
    private let answerWithin: Duration
    /// An attempt unanswered for this long is logged (once): it waits for a pooled connection.
    static let slowAttempt = Duration.seconds(10)

    init(database: EcoWattPostgresDatabase, retryEvery: Duration = .seconds(2), answerWithin: Duration = .seconds(5)) {
        self.database = database
        self.retryEvery = retryEvery
        self.answerWithin = answerWithin
    }

    /// Whether this instance drains now. When it does not, starts an attempt to take the lock (at most every
    /// `retryEvery`, one at a time) and waits for its answer, but at most `answerWithin`: a lease that does not come
    /// cannot stop the drain loop, which asks again in its next round (50 ms). The attempt's task is created and stored
    /// under the lock; an earlier version stored it after creating it, and an attempt that failed at once could leave a
    /// finished task behind for good, after which this instance never asked again.
    func holds() async -> Bool {
        let (asking, slow) = state.withLock { state -> (Bool, Duration?) in
            if state.stopped || state.held { return (false, nil) }
            let now = ContinuousClock.now
            if state.task == nil, state.lastTry.map({ now - $0 >= retryEvery }) ?? true {
                state.lastTry = now
                state.askingSince = now
                state.reportedSlowAttempt = false
                state.task = Task { await self.hold() }
            }
            guard let since = state.askingSince else { return (false, nil) }
            guard now - since >= Self.slowAttempt, !state.reportedSlowAttempt else { return (true, nil) }
            state.reportedSlowAttempt = true
            return (true, now - since)
        }
        if let slow {
            database.logger.warning(
                "MQTT outbox: the attempt to take the drain lock has not been answered",
                metadata: ["waited_s": "\(slow.components.seconds)"]
            )
        }
        if asking {
            // Answered in about a millisecond, and asked at most every 2 s: a short poll is all the waiting needed. The
            // bound is 5 s: opening a connection took over 1 s once, beside the whole test suite and two busy loops.
            let deadline = ContinuousClock.now + answerWithin
            while state.withLock({ $0.askingSince != nil }), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        return state.withLock { $0.held && !$0.stopped }
    }

    /// Stops draining here (shutdown): the lock's connection goes back to the pool, and no new attempt starts.
    func stop() {
        state.withLock {
            $0.stopped = true
            $0.task?.cancel()
        }
    }

    /// Leases a connection and takes the lock if it is free; keeps the lease (and so the lock) until cancelled or the
    /// connection fails.
    private func hold() async {
        let logger = database.logger
        let key = PostgresMigrations.Lock.outboxDrain.rawValue
        do {
            try await database.client.withConnection { connection in
                let taken =
                    try await connection.rows("SELECT pg_try_advisory_lock(\(key)) AS taken", logger: logger)
                    .first?.value("taken", as: Bool.self) ?? false
                let standby = state.withLock { state -> Bool in
                    state.held = taken
                    state.askingSince = nil
                    defer { state.reportedStandby = !taken }
                    return !taken && !state.reportedStandby
                }
                if standby { logger.info("another instance drains the MQTT outbox; this one takes over when it goes") }
                guard taken else { return }
                logger.notice("this instance drains the MQTT outbox")
                // Keeps the session (and its lock) alive; a broken connection ends the lease and the lock with it.
                var failure: (any Error)?
                while !Task.isCancelled, failure == nil {
                    do {
                        try await Task.sleep(for: .seconds(1))
                        try await connection.execute("SELECT 1", logger: logger)
                    } catch {
                        failure = error
                    }
                }
                // On every way out, stopped or failed: the connection goes back to the pool, and a session lock left on
                // it would outlive the lease, so that no instance, this one included, could take it again.
                try? await connection.execute("SELECT pg_advisory_unlock(\(key))", logger: logger)
                if let failure, !(failure is CancellationError) { throw failure }
            }
        } catch {
            if !Task.isCancelled {
                logger.warning("MQTT outbox drain lock lost or not asked for", metadata: ["error": "\(error.logDescription)"])
            }
        }
        state.withLock {
            $0.held = false
            $0.askingSince = nil
            $0.task = nil
        }
    }
}
