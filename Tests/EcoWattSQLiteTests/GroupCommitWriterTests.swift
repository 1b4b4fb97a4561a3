import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import GRDB
import Testing

/// A database in a temporary directory with its writer running.
struct TemporaryStore {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-store-\(UUID().uuidString)")
    var path: String { directory.appendingPathComponent("ecowatt.sqlite").path }

    /// The store on a new database, its writer not running yet (`store.writer`, `store.database`).
    func open(durability: Durability = .normal) throws -> SQLiteTelemetryStore {
        let database = try EcoWattDatabase(path: path, durability: durability)
        return SQLiteTelemetryStore(database: database, writer: GroupCommitWriter(database: database))
    }

    func withStore<T>(durability: Durability = .normal, _ body: (SQLiteTelemetryStore) async throws -> T) async throws -> T {
        let store = try open(durability: durability)
        let (database, writer) = (store.database, store.writer)
        let loop = Task { try await writer.run() }
        do {
            let value = try await body(store)
            writer.finish()
            try await loop.value
            try database.close()
            return value
        } catch {
            writer.finish()
            _ = try? await loop.value
            try? database.close()
            throw error
        }
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// One upload for `device` (a single sample unless `values` says otherwise).
func record(_ device: String, nonce: UInt32, values: [[UInt16]] = [[2300, 50]]) -> IngestRecord {
    IngestRecord.example(device, nonce: nonce, values: values)
}

@Suite struct GroupCommitWriterTests {
    @Test func concurrentWritesShareTransactionsAndAllCommit() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        try await temporary.withStore(durability: .full) { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for device in 0..<400 {
                    group.addTask { try await store.submit(record("D\(device)", nonce: 1)).value() }
                }
                try await group.waitForAll()
            }
            let counters = store.writer.counters
            #expect(counters.jobs == 400)
            #expect(counters.batches < 400, "group commit should batch concurrent writes")
            let samples = try DatabaseInspector(store.database).packets().map { $0.packet.samples?.count ?? 0 }.reduce(0, +)
            #expect(samples == 400)
        }
    }

    @Test func concurrentStateReadsShareTransactionsAndEachGetsItsOwnDevice() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        try await temporary.withStore { store in
            for device in 0..<300 { try await store.submit(record("R\(device)", nonce: UInt32(1000 + device))).value() }
            // 300 devices with states and 100 never seen, asked for all at once.
            let states = try await withThrowingTaskGroup(of: (Int, DeviceIngestState).self) { group in
                for device in 0..<400 { group.addTask { (device, try await store.ingestState(deviceID: "R\(device)")) } }
                var states: [Int: DeviceIngestState] = [:]
                for try await (device, state) in group { states[device] = state }
                return states
            }
            for device in 0..<400 {
                let state = try #require(states[device])
                #expect(state.lastNonce == (device < 300 ? UInt32(1000 + device) : nil), "R\(device)")
                #expect(state.admitted == (device < 300) && state.version == (device < 300 ? 1 : 0), "R\(device)")
            }
            let reads = store.stateReads
            #expect(reads.reads == 400)
            #expect(reads.batches < 400, "concurrent reads should share read transactions")
        }
    }

    @Test func aFailingJobIsRolledBackAloneAndNonceMustIncrease() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        try await temporary.withStore { store in
            try await store.submit(record("N1", nonce: 10)).value()
            let stale = store.submit(record("N1", nonce: 10, values: [[1, 1], [2, 2]]))
            let fresh = store.submit(record("N2", nonce: 1))
            await #expect(throws: StoreError.nonceNotIncreasing(deviceID: "N1", nonce: 10, stored: 10)) {
                try await stale.value()
            }
            try await fresh.value()
            let counts = try DatabaseInspector(store.database).packets().map { "\($0.deviceID)=\($0.packet.samples?.count ?? 0)" }
            #expect(counts == ["N1=1", "N2=1"])
        }
    }

    /// Each job of a batch runs in its own savepoint: a job that throws after writing leaves nothing, and the others of
    /// its batch commit once.
    @Test func aJobThatThrowsAfterWritingLeavesNothingAndTheRestOfItsBatchCommitsOnce() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        struct Refused: Error {}
        try await temporary.withStore { store in
            try await store.writer.write { db in try db.execute(sql: "CREATE TABLE marks (name TEXT NOT NULL)") }
            // Queued synchronously, one after another: they share a batch unless the writer takes the first alone.
            let tickets = (0..<6).map { i in
                store.writer.enqueue { db in
                    try db.execute(sql: "INSERT INTO marks (name) VALUES (?)", arguments: ["job\(i)"])
                    if i == 3 { throw Refused() }
                    return i
                }
            }
            for (i, ticket) in tickets.enumerated() {
                if i == 3 {
                    await #expect(throws: Refused.self) { try await ticket.value() }
                } else {
                    #expect(try await ticket.value() == i)
                }
            }
            let names = try await store.database.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM marks ORDER BY name") }
            #expect(names == ["job0", "job1", "job2", "job4", "job5"])
        }
    }

    @Test func stateSurvivesReopening() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        let written = record("P1", nonce: 77)
        try await temporary.withStore { store in try await store.submit(written).value() }
        try await temporary.withStore { store in
            let state = try await store.ingestState(deviceID: "P1")
            #expect(state.lastNonce == 77)
            #expect(state.stream == written.streamState)
            #expect(try await store.latestSample(deviceID: "P1")?.rawValues == [2300, 50])
            #expect(try await store.submitNonceReset(deviceID: "P1").value() == true)
            #expect(try await store.ingestState(deviceID: "P1").lastNonce == nil)
        }
    }

    @Test func finishCommitsQueuedWorkThenRefusesNewWork() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        let store = try temporary.open()
        let (database, writer) = (store.database, store.writer)
        let queued = (0..<50).map { store.submit(record("Q\($0)", nonce: 1)) }
        writer.finish()
        try await writer.run()
        for ticket in queued { try await ticket.value() }
        await #expect(throws: StoreError.shuttingDown) { try await store.submit(record("late", nonce: 1)).value() }
        try database.close()
    }

    /// The loop runs on a thread of its own: it wakes for work sent while it waits, and a cancelled loop (the service
    /// group cancels every service when one fails) returns instead of keeping the process alive.
    @Test func theWriterThreadWakesForEachWriteAndACancelledLoopReturns() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        let store = try temporary.open()
        let (database, writer) = (store.database, store.writer)
        let loop = Task { try await writer.run() }
        for nonce in UInt32(1)...5 {
            // Each write arrives after the thread went back to waiting.
            try await Task.sleep(for: .milliseconds(20))
            try await store.submit(record("W1", nonce: nonce)).value()
        }
        #expect(writer.counters == (batches: 5, jobs: 5, failed: 0))
        loop.cancel()
        try await loop.value
        await #expect(throws: StoreError.shuttingDown) { try await store.submit(record("W1", nonce: 6)).value() }
        try database.close()
    }

    @Test func databaseIsInWALMode() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        try await temporary.withStore { store in
            let mode = try await store.database.pool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
            #expect(mode == "wal")
        }
    }
}
