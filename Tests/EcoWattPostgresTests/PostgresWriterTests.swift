import EcoWattStorage
import EcoWattTestSupport
import PostgresNIO
import Testing

@testable import EcoWattPostgres

/// The PostgreSQL writer's group commit against another instance's transaction, on a real server.
@Suite struct PostgresWriterTests {
    static let logger = PostgresTestDatabase.logger

    /// Returns once one session of `client`'s database waits for an advisory lock (`pg_locks` is the whole cluster's).
    static func waitUntilOneWaitsForAnAdvisoryLock(_ client: PostgresClient) async throws {
        let waiting: PostgresQuery = """
            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        while try await client.query(waiting).collect().first?.decode(Int.self) != 1 {
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Runs `body` with a writer on `databases[0]` and a store of uploads on it.
    static func withWriter(
        _ databases: [EcoWattPostgresDatabase],
        _ body: (PostgresWriter, PostgresTelemetryStore) async throws -> Void
    ) async throws {
        let writer = PostgresWriter(database: databases[0])
        let loop = Task { try await writer.run() }
        let store = PostgresTelemetryStore(database: databases[0], writer: writer, retention: RetentionPolicy(), events: RegistryEvents())
        try await body(writer, store)
        writer.finish()
        try await loop.value
    }

    /// A batch that queues MQTT outbox rows takes the outbox's order lock before any device row, so that waiting for it
    /// holds nothing another transaction waits for. Taken by the first job that queued a row, after that job had locked
    /// its device, it closed deadlock cycles with other lanes and instances (2 to 19 per run of the two-instance crash
    /// test; none since).
    @Test(.enabled(if: PostgresServer.enabled))
    func anUploadQueuedForMQTTWaitsForTheOutboxOrderWithoutHoldingItsDevice() async throws {
        try await PostgresTestDatabase.with(instances: 2) { databases in
            try await Self.withWriter(databases) { writer, store in
                try await store.submit(IngestRecord.example("ORDER-1", nonce: 1)).value()
                let other = databases[1].client
                let order = PostgresMigrations.Lock.outboxOrder.rawValue
                let upload = try await other.withTransaction(logger: Self.logger) { connection in
                    _ = try await connection.query("SELECT pg_advisory_xact_lock(\(order))", logger: Self.logger).collect()
                    var record = IngestRecord.example("ORDER-1", nonce: 2)
                    record.queueForFeed = true
                    let upload = store.submit(record)
                    try await Self.waitUntilOneWaitsForAnAdvisoryLock(other)
                    // NOWAIT: an error if the waiting upload held the row.
                    _ = try await connection.query("SELECT 1 FROM devices WHERE device_id = 'ORDER-1' FOR UPDATE NOWAIT", logger: Self.logger)
                        .collect()
                    return upload
                }
                try await upload.value()
                #expect(try await store.outboxCount() == 1, "stored and queued for MQTT once")
            }
        }
    }

    /// A deadlock found while a locking `SELECT` waits reaches the writer as a deadlock (40P01), and the batch runs
    /// again. PostgresNIO's `query` returns at the row description, before the statement has run: unread, its error was
    /// lost and the next statement failed with `25P02` ("current transaction is aborted"), which is not retried (the
    /// crash test's survivor answered such uploads 503). `execute` reads the rows to the end.
    ///
    /// The session whose `deadlock_timeout` runs out while the other already waits finds the cycle and aborts itself.
    /// The writer's sessions check after 3 s and the other's after 60 s, so the writer's loses even when a loaded
    /// machine takes a second between the two waits (at the default 1 s, the other side once lost instead, beside the
    /// whole suite). Setting them needs a superuser, as the test server's role is.
    @Test(.enabled(if: PostgresServer.enabled))
    func aDeadlockFoundWhileALockingSelectWaitsRunsTheBatchAgain() async throws {
        try await PostgresTestDatabase.with(instances: 2, migrated: false) { databases in
            // Before the writer's instance opens a connection: its sessions take the database's setting.
            _ = try await databases[1].client.query(
                "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = ''3s''', current_database()); END $$"
            ).collect()
            _ = try await databases[0].migrate()
            try await Self.withWriter(databases) { writer, store in
                for device in ["LOCK-A", "LOCK-B"] { try await store.submit(IngestRecord.example(device, nonce: 1)).value() }
                let before = writer.counters
                let other = databases[1].client
                let (first, second) = (PostgresMigrations.Lock.auditChain.rawValue, PostgresMigrations.Lock.rolloutMembership.rawValue)
                let job = try await other.withTransaction(logger: Self.logger) { connection in
                    _ = try await connection.query("SET LOCAL deadlock_timeout = '60s'", logger: Self.logger)
                    _ = try await connection.query("SELECT pg_advisory_xact_lock(\(second))", logger: Self.logger).collect()
                    let job = writer.enqueue { connection, logger in
                        try await connection.execute("SELECT pg_advisory_xact_lock(\(first))", logger: logger)
                        try await connection.execute("SELECT pg_advisory_xact_lock(\(second))", logger: logger)
                        try await connection.execute("UPDATE devices SET location = 'after the retry' WHERE device_id = 'LOCK-A'", logger: logger)
                    }
                    try await Self.waitUntilOneWaitsForAnAdvisoryLock(other)
                    _ = try await connection.query("SELECT pg_advisory_xact_lock(\(first))", logger: Self.logger).collect()
                    return job
                }
                try await job.value()
                let after = writer.counters
                #expect(after.batches - before.batches == 1 && after.failed == 0, "one commit, after the deadlock's retry: \(after)")
                let location = try await other.query("SELECT location FROM devices WHERE device_id = 'LOCK-A'").collect().first?.decode(String?.self)
                #expect(location == "after the retry")
            }
        }
    }
}
