import EcoWattStorage
import EcoWattTestSupport
import PostgresNIO
import Testing

@testable import EcoWattPostgres

/// The PostgreSQL writer's group commit against another instance's transaction, on a real server.
@Suite struct PostgresWriterTests {
    /// An upload queued for MQTT takes its device's row, then the outbox's order lock. Another instance holding the
    /// order lock and then asking for the same row closes a cycle; PostgreSQL finds it after `deadlock_timeout` and
    /// aborts the upload's statement. The writer must see that deadlock (40P01) and run the batch again. It used to see
    /// only `25P02` ("current transaction is aborted") from the statement after, because the lock's `SELECT` was never
    /// read to its end, and the upload was answered 503 (CI: the two-instance crash test's survivor).
    ///
    /// Which side loses is up to timing: the session whose `deadlock_timeout` runs out while the other already waits
    /// finds the cycle and aborts itself. The upload's sessions check after 3 s and the other's after 60 s, so the upload
    /// loses even when a loaded machine takes a second between the two waits (at the default 1 s, the other side once
    /// lost instead, beside the whole suite). Setting them needs a superuser, as the test server's role is.
    @Test(.enabled(if: PostgresServer.enabled))
    func anUploadThatLosesADeadlockWhileWaitingForTheOutboxLockIsRunAgainAndStored() async throws {
        try await PostgresTestDatabase.with(instances: 2, migrated: false) { databases in
            // Before the writer's instance opens a connection: its sessions take the database's setting.
            _ = try await databases[1].client.query(
                "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = ''3s''', current_database()); END $$"
            ).collect()
            _ = try await databases[0].migrate()
            let writer = PostgresWriter(database: databases[0])
            let loop = Task { try await writer.run() }
            let store = PostgresTelemetryStore(database: databases[0], writer: writer, retention: RetentionPolicy(), events: RegistryEvents())
            try await store.submit(IngestRecord.example("DEADLOCK-1", nonce: 1)).value()
            let before = writer.counters

            let order = PostgresMigrations.Lock.outboxOrder.rawValue
            let other = databases[1].client
            let logger = PostgresTestDatabase.logger
            let waiting: PostgresQuery = """
                SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """
            let upload = try await other.withTransaction(logger: logger) { connection in
                _ = try await connection.query("SET LOCAL deadlock_timeout = '60s'", logger: logger)
                _ = try await connection.query("SELECT pg_advisory_xact_lock(\(order))", logger: logger).collect()
                var record = IngestRecord.example("DEADLOCK-1", nonce: 2)
                record.queueForFeed = true
                let upload = store.submit(record)
                // The upload holds the device's row and waits for the order lock: now ask for the row.
                while try await other.query(waiting).collect().first?.decode(Int.self) != 1 {
                    try await Task.sleep(for: .milliseconds(5))
                }
                _ = try await connection.query("SELECT 1 FROM devices WHERE device_id = 'DEADLOCK-1' FOR UPDATE", logger: logger).collect()
                return upload
            }
            try await upload.value()
            #expect(try await store.outboxCount() == 1, "stored and queued for MQTT once")
            let after = writer.counters
            #expect(after.batches - before.batches == 1 && after.failed == 0, "one commit, after the deadlock's retry: \(after)")

            writer.finish()
            try await loop.value
        }
    }
}
