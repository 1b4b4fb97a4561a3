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
        var task: Task<Void, Never>?
        var lastTry: ContinuousClock.Instant?
    }

    private let database: EcoWattPostgresDatabase
    private let state = Mutex(State())
    static let retryEvery = Duration.seconds(2)

    init(database: EcoWattPostgresDatabase) {
        self.database = database
    }

    /// Whether this instance drains now; when not, tries to take the lock (at most every 2 s) and answers with the result.
    func holds() async -> Bool {
        let attempt = state.withLock { state -> Bool? in
            if state.held { return true }
            let now = ContinuousClock.now
            guard state.task == nil, state.lastTry.map({ now - $0 >= Self.retryEvery }) ?? true else { return false }
            state.lastTry = now
            return nil
        }
        if let attempt { return attempt }
        return await withCheckedContinuation { (taken: CheckedContinuation<Bool, Never>) in
            let task = Task { await self.hold(answer: taken) }
            state.withLock { $0.task = task }
        }
    }

    /// Stops draining here (shutdown): the lock's connection goes back to the pool.
    func stop() {
        state.withLock { $0.task?.cancel() }
    }

    /// Leases a connection and takes the lock if it is free; keeps the lease (and so the lock) until cancelled or the
    /// connection fails.
    private func hold(answer: CheckedContinuation<Bool, Never>) async {
        let logger = database.logger
        var answered = false
        do {
            try await database.client.withConnection { connection in
                let taken =
                    try await connection.rows(
                        "SELECT pg_try_advisory_lock(\(PostgresMigrations.Lock.outboxDrain.rawValue)) AS taken",
                        logger: logger
                    ).first?.value("taken", as: Bool.self) ?? false
                state.withLock { $0.held = taken }
                answered = true
                answer.resume(returning: taken)
                guard taken else { return }
                logger.notice("this instance drains the MQTT outbox")
                // Keeps the session (and its lock) alive; a broken connection ends the lease and the lock with it.
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(1))
                    try await connection.query("SELECT 1", logger: logger)
                }
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(PostgresMigrations.Lock.outboxDrain.rawValue))", logger: logger)
            }
        } catch {
            if !Task.isCancelled { logger.warning("MQTT outbox drain lock lost", metadata: ["error": "\(error.logDescription)"]) }
        }
        if !answered { answer.resume(returning: false) }
        state.withLock {
            $0.held = false
            $0.task = nil
        }
    }
}
