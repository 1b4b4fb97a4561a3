import EcoWattStorage
import Foundation
import GRDB
import Logging
import ServiceLifecycle

/// The single writer: concurrent requests submit work, and every batch of waiting work runs in **one** SQLite
/// transaction (group commit), so a durable commit is paid once per batch instead of once per request.
///
/// Each job runs in its own savepoint: a job that throws is rolled back alone and gets its error; the others commit.
/// A caller is resumed only after the transaction holding its work has committed. Run it as a `Service`; on graceful
/// shutdown it commits what is queued, then refuses new work with ``StoreError/shuttingDown``.
///
/// One writer commits everything in submission order, which is more than the storage contract asks: the contract is
/// per device (one device's writes in submission order), so that a backend with several writers (PostgreSQL, several
/// instances) can keep it with the nonce check in its transactions.
public final class GroupCommitWriter: Service, StorageProbe {
    private let database: EcoWattDatabase
    private let logger: Logger
    private let queue: BatchQueue<Job>
    private let failures: CommitFailures

    /// A queued unit of work; `apply` runs on the writer's connection and returns the action that resumes the caller.
    private struct Job: Sendable {
        let apply: @Sendable (Database) throws -> @Sendable () -> Void
        let fail: @Sendable (any Error) -> Void
    }

    public init(database: EcoWattDatabase, maxBatch: Int = 1024, logger: Logger = Logger(label: "ecowatt.writer")) {
        self.database = database
        queue = BatchQueue(maxBatch: maxBatch)
        self.logger = logger
        failures = CommitFailures(logger: logger)
    }

    /// Runs `body` inside the next group transaction and returns its result once that transaction committed.
    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await enqueue(body).value()
    }

    /// Queues `body` **synchronously** (so callers on one actor keep their order) and returns a ticket to await.
    public func enqueue<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) -> WriteTicket<T> {
        let ticket = WriteTicket<T>()
        let job = Job(
            apply: { db in
                let value = try body(db)
                return { ticket.complete(.success(value)) }
            },
            fail: { ticket.complete(.failure($0)) }
        )
        if !queue.enqueue(job) { ticket.complete(.failure(StoreError.shuttingDown)) }
        return ticket
    }

    /// Readiness without a write (issue 13: `/ready` is open, so it must not cost a transaction): the database answers a
    /// read, and the writer runs and has not left work waiting longer than `stalledAfter`.
    public func probe(stalledAfter: Duration = .seconds(5)) async -> (ready: Bool, detail: String) {
        do {
            _ = try await database.pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
        } catch {
            return (false, "database not readable: \(error)")
        }
        if let failing = failures.notReady() { return (false, failing) }
        let writer = queue.readiness(stalledAfter: stalledAfter)
        return (writer.ready, writer.ready ? "readable; \(writer.detail)" : writer.detail)
    }

    /// Transactions and jobs committed so far, and transactions that failed to commit (for statistics and metrics).
    public var counters: (batches: Int, jobs: Int, failed: Int) {
        let committed = queue.counters
        return (committed.batches, committed.jobs, failures.count)
    }

    /// The commit loop. Returns after a graceful shutdown once the queue is empty, or at once when cancelled (the
    /// service group cancels every service when one fails, e.g. the HTTP server cannot bind its port; waiting for
    /// more work then would keep the process alive forever).
    ///
    /// The loop runs on a thread of its own, which blocks while there is no work and runs each transaction itself
    /// (GRDB's synchronous `write` runs on the calling thread). An async loop cost every batch two thread hand-offs:
    /// the loop's task woken on the concurrency pool, then GRDB's `write` hopping to its dispatch queue and back. With no
    /// write at all in the jobs, those hand-offs alone cost 0.03-0.06 ms per upload (BENCHMARKS.md, issue 23).
    public func run() async throws {
        queue.setRunning(true)
        defer { queue.setRunning(false) }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    let thread = Thread { [self] in
                        // Named from inside: on Linux only the running thread's name reaches the kernel (`top -H`, perf).
                        Thread.current.name = "ecowatt-writer"
                        while let batch = queue.nextBatchBlocking() { commit(batch) }
                        done.resume()
                    }
                    thread.start()
                }
            } onGracefulShutdown: {
                self.finish()
            }
        } onCancel: {
            self.finish()
        }
    }

    /// Stops accepting work; queued work is still committed by ``run()``.
    public func finish() { queue.finish() }

    private func commit(_ jobs: [Job]) {
        var firstFailure: (any Error)?
        do {
            let outcomes = try database.pool.write { db in Self.apply(jobs, db, firstFailure: &firstFailure) }
            failures.committed()
            queue.delivered(jobs, outcomes) { job, error in job.fail(error) }
        } catch {
            // When a job's error made SQLite roll back the whole transaction (a full disk does), GRDB's commit only says
            // "Transaction was aborted"; the job's error says why.
            let error = (error as? DatabaseError)?.resultCode == .SQLITE_ABORT ? (firstFailure ?? error) : error
            failures.failed(error.logDescription)
            for job in jobs { job.fail(error) }
        }
    }

    /// Runs each job in its own savepoint inside the current transaction.
    private static func apply(_ jobs: [Job], _ db: Database, firstFailure: inout (any Error)?) -> [BatchQueue<Job>.Outcome] {
        jobs.map { job in
            do {
                return .committed(try inSavepoint(db) { try job.apply(db) })
            } catch {
                if firstFailure == nil { firstFailure = error }
                return .failed(error)
            }
        }
    }

    /// `body` in a savepoint of prepared statements kept for the connection's life. GRDB's `inSavepoint` compiles
    /// `SAVEPOINT` and `RELEASE` on every call: two prepares (each through the authorizer) per job, on the one thread
    /// every write waits for. GRDB still sees each statement's savepoint effect (it records it when it prepares one).
    /// After a failure SQLite may have rolled back the whole transaction; the rollback then fails, GRDB refuses the
    /// statements of later jobs (an aborted transaction), and the batch fails as a whole with the job's error.
    private static func inSavepoint<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        try db.cachedStatement(sql: "SAVEPOINT job").execute()
        do {
            let value = try body()
            try db.cachedStatement(sql: "RELEASE SAVEPOINT job").execute()
            return value
        } catch {
            do {
                try db.cachedStatement(sql: "ROLLBACK TRANSACTION TO SAVEPOINT job").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT job").execute()
            } catch {
                // The transaction is gone (SQLite rolled it back): the job's own error is the cause.
            }
            throw error
        }
    }
}
