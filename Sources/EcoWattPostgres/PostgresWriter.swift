import EcoWattStorage
import Logging
import PostgresNIO
import ServiceLifecycle

/// An instance's writers on PostgreSQL (issue 22), fed as SQLite's is by ``BatchQueue``: every batch of waiting work
/// runs in **one** transaction on one connection (group commit), each job in its own savepoint, so a job that throws
/// is rolled back alone. Callers are resumed once the transaction committed.
///
/// Every statement is a round trip, so one connection commits a few hundred uploads a second at most (577/s measured
/// on the 2-core machine). Work about a device goes to one of several lanes by the id's hash — one device's writes stay
/// in submission order, which is the storage contract — and the lanes commit on their own connections at once;
/// unkeyed work takes lane 0. Work about many devices is split by lane (the last-seen flush), and the outbox's order
/// lock is taken before any row, so an instance's lanes rarely wait for each other. Transactions can still deadlock
/// (unkeyed work, another instance's lanes): PostgreSQL then aborts one, and that batch runs again from its start
/// (nothing of it committed). Across instances nothing is ordered: the statements keep their guarantees by themselves
/// (the nonce is a conditional update, caps lock their rows).
public final class PostgresWriter: Service, Sendable {
    let database: EcoWattPostgresDatabase
    let queues: [BatchQueue<Job>]
    let failures: CommitFailures

    /// A queued unit of work; `apply` runs on the writer's connection and returns the action that resumes the caller.
    struct Job: Sendable {
        let apply: @Sendable (PostgresConnection, Logger) async throws -> @Sendable () -> Void
        let fail: @Sendable (any Error) -> Void
        /// The job queues rows in the MQTT outbox: its batch takes the outbox's order lock first (see `commit`).
        let queuesOutbox: Bool
    }

    /// Transactions aborted by a deadlock or a serialization failure run again at most this often.
    static let attempts = 5

    public init(database: EcoWattPostgresDatabase, lanes: Int = 4, maxBatch: Int = 256) {
        self.database = database
        queues = (0..<max(1, lanes)).map { _ in BatchQueue(maxBatch: maxBatch) }
        failures = CommitFailures(logger: database.logger)
    }

    /// Runs `body` inside the next group transaction and returns its result once that transaction committed.
    public func write<T: Sendable>(
        device: String? = nil,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        try await enqueue(device: device, body).value()
    }

    /// Queues `body` **synchronously** (so one caller's submissions keep their order) and returns a ticket to await.
    /// - Parameters:
    ///   - device: the device the work is about: its writes keep their order on one lane.
    ///   - queuesOutbox: `body` inserts into `mqtt_outbox`; it must, and may only then (see `commit`).
    public func enqueue<T: Sendable>(
        device: String? = nil,
        queuesOutbox: Bool = false,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) -> WriteTicket<T> {
        let ticket = WriteTicket<T>()
        let job = Job(
            apply: { connection, logger in
                let value = try await body(connection, logger)
                return { ticket.complete(.success(value)) }
            },
            fail: { ticket.complete(.failure($0)) },
            queuesOutbox: queuesOutbox
        )
        if !queues[device.map(lane(of:)) ?? 0].enqueue(job) { ticket.complete(.failure(StoreError.shuttingDown)) }
        return ticket
    }

    /// The lane that commits `device`'s work: work grouped by it never locks another lane's device rows.
    public func lane(of device: String) -> Int {
        Int(UInt(bitPattern: device.hashValue) % UInt(queues.count))
    }

    /// Transactions and jobs committed so far, and transactions that failed to commit (after their retries).
    public var counters: (batches: Int, jobs: Int, failed: Int) {
        let committed = queues.reduce((0, 0)) { total, queue in
            let lane = queue.counters
            return (total.0 + lane.batches, total.1 + lane.jobs)
        }
        return (committed.0, committed.1, failures.count)
    }

    /// The lanes' commit loops; after a graceful shutdown they commit what is queued, then return.
    public func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    for queue in queues {
                        group.addTask {
                            queue.setRunning(true)
                            defer { queue.setRunning(false) }
                            while let batch = await queue.nextBatch() { await self.commit(batch, queue) }
                        }
                    }
                }
            } onGracefulShutdown: {
                self.finish()
            }
        } onCancel: {
            self.finish()
        }
    }

    /// Stops accepting work; queued work is still committed by ``run()``.
    public func finish() { for queue in queues { queue.finish() } }

    /// Every lane runs and has left nothing waiting longer than `stalledAfter`.
    func readiness(stalledAfter: Duration) -> (ready: Bool, detail: String) {
        if let failing = failures.notReady() { return (false, failing) }
        for queue in queues {
            let lane = queue.readiness(stalledAfter: stalledAfter)
            if !lane.ready { return lane }
        }
        return (true, "\(queues.count) writers running")
    }

    /// A lock conflict between transactions, which a retry resolves (deadlock, serialization failure).
    private struct Conflict: Error {
        let error: any Error
    }

    private func commit(_ jobs: [Job], _ queue: BatchQueue<Job>) async {
        let logger = database.logger
        for attempt in 1...Self.attempts {
            do {
                let outcomes = try await database.transaction { connection in
                    // Outbox rows are inserted under a transaction lock, so that their ids commit in order (see
                    // `PostgresTelemetryStore.queueForFeed`). Taken first, before any row: a batch that waits for it
                    // holds nothing another waits for. Taken by the first job that queued a row, it closed deadlock
                    // cycles with the lanes and instances holding device rows (2 to 19 per run of the two-instance
                    // crash test, each a batch stalled for PostgreSQL's 1 s deadlock_timeout).
                    if jobs.contains(where: \.queuesOutbox) {
                        try await connection.execute("SELECT pg_advisory_xact_lock(\(PostgresMigrations.Lock.outboxOrder.rawValue))", logger: logger)
                    }
                    var outcomes: [BatchQueue<Job>.Outcome] = []
                    for job in jobs {
                        try await connection.execute("SAVEPOINT job", logger: logger)
                        do {
                            let resume = try await job.apply(connection, logger)
                            try await connection.execute("RELEASE SAVEPOINT job", logger: logger)
                            outcomes.append(.committed(resume))
                        } catch {
                            // A deadlock aborts the whole batch: its other jobs may hold the rows the other side waits for.
                            if ["40P01", "40001"].contains(error.sqlState) { throw Conflict(error: error) }
                            try await connection.execute("ROLLBACK TO SAVEPOINT job", logger: logger)
                            outcomes.append(.failed(error))
                        }
                    }
                    return outcomes
                }
                failures.committed()
                queue.delivered(jobs, outcomes) { job, error in job.fail(error) }
                return
            } catch let conflict as Conflict where attempt < Self.attempts {
                logger.info("write batch ran into another writer's locks; running it again", metadata: ["error": "\(conflict.error.logDescription)"])
                try? await Task.sleep(for: .milliseconds(Int64.random(in: 1...20)))
            } catch {
                // The last attempt's conflict fails its callers with PostgreSQL's own error (a storage error, 503).
                let error = (error as? Conflict)?.error ?? error
                failures.failed(error.logDescription)
                for job in jobs { job.fail(error) }
                return
            }
        }
    }
}
