import EcoWattPostgres
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import Synchronization
import Testing

/// The stores of one backend, as the server's services see them (issue 17).
struct BackendStores {
    let telemetry: any TelemetryStore & OutboxStore
    let devices: any DeviceRegistryStore & CommandStore & ConfigStore & ReportStore & OTAStore & RolloutStore
    let bindings: any BindingStore
    let accounts: any AccountStore

    typealias Backend = StoreContractTests.Backend

    /// Runs `body` with fresh stores of `backend`, with `retention`'s caps and `events` told of admissions:
    /// `instances` sets of them on one database (PostgreSQL: a client and a writer each, as separate server instances;
    /// the embedded backends: the same stores, their single process).
    static func with(
        _ backend: Backend,
        instances: Int,
        retention: RetentionPolicy = RetentionPolicy(),
        events: RegistryEvents = RegistryEvents(),
        _ body: ([BackendStores]) async throws -> Void
    ) async throws {
        switch backend {
        case .memory:
            let store = InMemoryStore(retention: retention, events: events)
            try await body(Array(repeating: BackendStores(telemetry: store, devices: store, bindings: store, accounts: store), count: instances))
        case .sqlite:
            try await StoreContractTests.withSQLite { database, writer in
                let devices = SQLiteDeviceStore(database: database, writer: writer, retention: retention, events: events)
                let stores = BackendStores(
                    telemetry: SQLiteTelemetryStore(database: database, writer: writer, retention: retention, events: events),
                    devices: devices,
                    bindings: devices,
                    accounts: SQLiteAccountStore(database: database, writer: writer)
                )
                try await body(Array(repeating: stores, count: instances))
            }
        case .postgres:
            try await PostgresTestDatabase.with(instances: instances) { databases in
                let writers = databases.map { PostgresWriter(database: $0) }
                let loops = writers.map { writer in Task { try await writer.run() } }
                defer { for loop in loops { loop.cancel() } }
                try await body(
                    zip(databases, writers).map { database, writer in
                        let devices = PostgresDeviceStore(database: database, writer: writer, retention: retention, events: events)
                        return BackendStores(
                            telemetry: PostgresTelemetryStore(database: database, writer: writer, retention: retention, events: events),
                            devices: devices,
                            bindings: devices,
                            accounts: PostgresAccountStore(database: database)
                        )
                    }
                )
                for (writer, loop) in zip(writers, loops) {
                    writer.finish()
                    try await loop.value
                }
            }
        }
    }

    /// One set of fresh stores of `backend`.
    static func with(
        _ backend: Backend,
        retention: RetentionPolicy = RetentionPolicy(),
        events: RegistryEvents = RegistryEvents(),
        _ body: (BackendStores) async throws -> Void
    ) async throws {
        try await with(backend, instances: 1, retention: retention, events: events) { try await body($0[0]) }
    }

    static func command(_ json: String, nowMs: Int64 = 0) throws -> CommandRequest {
        try CommandRequest(json: JSONParser.parse(Array(json.utf8)), nowMs: nowMs)
    }
}

/// The contract of ``DeviceRegistryStore`` and ``CommandStore``, against every backend.
@Suite struct RegistryContractTests {
    typealias Backend = StoreContractTests.Backend

    @Test(arguments: Backend.cases) func aRegistrationCreatesAPendingDeviceThatAVerifiedUploadVerifies(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let registry = stores.devices
            #expect(try await registry.register(deviceID: "R1", fields: DeviceFields(deviceName: "roof", location: "A"), nowMs: 1_000))
            #expect(try await registry.register(deviceID: "R1", fields: DeviceFields(location: "B"), nowMs: 2_000) == false)
            var row = try #require(try await registry.device("R1"))
            #expect(row.deviceName == "roof" && row.location == "B" && row.registeredAtMs == 1_000)
            #expect(row.firstSeenMs == 1_000 && row.lastSeenMs == 2_000 && row.admission == "pending" && row.uploadCount == 0)
            var upload = IngestRecord.example("R1", nonce: 5)
            upload.clientAddress = "10.0.0.9"
            try await stores.telemetry.submit(upload).value()
            row = try #require(try await registry.device("R1"))
            #expect(row.admission == "verified" && row.uploadCount == 1 && row.boundAddress == "10.0.0.9")
            #expect(row.deviceName == "roof", "an upload keeps the registered fields")
            try await stores.telemetry.recordNonceJumpRefused(deviceID: "R1", nonce: 9_999_999)
            row = try #require(try await registry.device("R1"))
            #expect(row.nonceJumpsRefused == 1 && row.lastRefusedNonce == 9_999_999)
            try await stores.telemetry.submit(IngestRecord.example("A0", nonce: 1)).value()
            #expect(try await registry.devices(limit: 10).map(\.deviceID) == ["A0", "R1"], "by id, uploads create rows")
            #expect(try await registry.devices(limit: 1).map(\.deviceID) == ["A0"])
            #expect(Set(try await registry.knownDevices().keys) == ["A0", "R1"])
            #expect(try await registry.device("NOPE") == nil)
        }
    }

    @Test(arguments: Backend.cases) func anOperatorEditAdoptsAKnownDeviceAndNeverCreatesOne(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let registry = stores.devices
            #expect(try await registry.updateDevice("GHOST", fields: DeviceFields(deviceName: "x")) == nil)
            #expect(try await registry.device("GHOST") == nil)
            #expect(try await registry.admit(deviceID: "E1", nowMs: 10))
            #expect(try await registry.admit(deviceID: "E1", nowMs: 20), "still pending")
            let edited = try #require(try await registry.updateDevice("E1", fields: DeviceFields(description: "kept")))
            #expect(edited.admission == "operator" && edited.description == "kept" && edited.deviceName == nil)
            #expect(try await registry.admit(deviceID: "E1", nowMs: 30) == false, "adopted devices are not pending")
        }
    }

    /// Pending ids are bounded: the oldest is dropped with everything it stored; verified and adopted ones never are.
    @Test(arguments: Backend.cases) func pendingDevicesAreBoundedAndTheOldestGoesWithWhatItStored(_ backend: Backend) async throws {
        var retention = RetentionPolicy()
        retention.maxPendingDevices = 2
        let events = RegistryEvents()
        let seen = EventLog()
        events.observe { seen.append($0) }
        try await BackendStores.with(backend, retention: retention, events: events) { stores in
            let registry = stores.devices
            try await stores.telemetry.submit(IngestRecord.example("V", nonce: 1)).value()
            try await registry.addPowerReport(PowerReport(deviceID: "P1", receivedAtMs: 100))
            try await registry.recordRunning(deviceID: "P1", report: .object([("sampling_interval", .int(5))]), nowMs: 110)
            _ = try await registry.admit(deviceID: "P2", nowMs: 200)
            _ = try await registry.admit(deviceID: "P3", nowMs: 300)
            #expect(try await registry.device("P1") == nil, "the oldest pending id is dropped")
            #expect(try await registry.powerReports(deviceID: "P1", sinceMs: 0, limit: 10).isEmpty)
            #expect(try await registry.configState(deviceID: "P1").running == .object([]))
            for kept in ["V", "P2", "P3"] { #expect(try await registry.device(kept) != nil) }
            let counts = try await registry.retentionCounts()
            #expect(counts.rows["pending_devices"] == 2 && counts.dropped["pending_devices"] == 1)
            #expect(counts.dropped["power_reports"] == 1 && counts.rows["power_reports"] == 0)
            #expect(seen.evicted == ["P1"] && seen.admitted == ["P1", "P2", "P3"])
        }
    }

    @Test(arguments: Backend.cases) func lastSeenOnlyMovesKnownDevicesForward(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let registry = stores.devices
            _ = try await registry.register(deviceID: "L1", fields: DeviceFields(), nowMs: 1_000)
            try await registry.recordLastSeen(["L1": 5_000, "UNKNOWN": 6_000])
            try await registry.recordLastSeen(["L1": 4_000])
            #expect(try await registry.device("L1")?.lastSeenMs == 5_000)
            #expect(try await registry.device("UNKNOWN") == nil, "a poll never creates a row")
            #expect(try await registry.knownDevices() == ["L1": 5_000])
        }
    }

    @Test(arguments: Backend.cases) func deletingADeviceCancelsItsPendingCommandsAndKeepsItsNonce(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let registry = stores.devices
            try await stores.telemetry.submit(IngestRecord.example("DEL", nonce: 40)).value()
            let queued = try await registry.queue(
                BackendStores.command(#"{"command":{"action":"get_power_stats"}}"#),
                deviceID: "DEL",
                nowMs: 1,
                maxPending: 5
            )
            #expect(try await registry.deleteDevice("DEL", nowMs: 50))
            #expect(try await registry.deleteDevice("DEL", nowMs: 60) == false)
            #expect(try await registry.device("DEL") == nil)
            let command = try #require(try await registry.command(queued.command.commandID))
            #expect(command.status == .cancelled && command.finishedAtMs == 50)
            #expect(try await stores.telemetry.ingestState(deviceID: "DEL").lastNonce == 40, "old uploads stay replays")
        }
    }

    // MARK: - CommandStore

    @Test(arguments: Backend.cases) func commandsAreQueuedOncePerIdempotencyKeyAndBoundedPerDevice(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let commands = stores.devices
            let keyed = try BackendStores.command(#"{"command":{"action":"set_power","value":500},"idempotency_key":"k1"}"#)
            // The same key at once (a retried request racing its original): exactly one command.
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 { group.addTask { try await commands.queue(keyed, deviceID: "C1", nowMs: 10, maxPending: 3).created } }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.count(where: { $0 }) == 1)
            let first = try await commands.queue(keyed, deviceID: "C1", nowMs: 20, maxPending: 3)
            #expect(!first.created && first.command.value == 500 && first.command.registerAddress == 8 && first.command.createdAtMs == 10)
            let plain = try BackendStores.command(#"{"command":{"action":"get_power_stats"}}"#)
            _ = try await commands.queue(plain, deviceID: "C1", nowMs: 30, maxPending: 3)
            _ = try await commands.queue(plain, deviceID: "C1", nowMs: 40, maxPending: 3)
            await #expect(throws: CommandStoreError.queueFull(deviceID: "C1", limit: 3)) {
                try await commands.queue(plain, deviceID: "C1", nowMs: 50, maxPending: 3)
            }
            #expect(try await commands.device("C1")?.admission == "operator", "queueing creates the device as the operator's")
            #expect(try await commands.commandHistory(deviceID: "C1", limit: 10).map(\.createdAtMs) == [40, 30, 10], "newest first")
            #expect(try await commands.commandHistory(deviceID: "C1", limit: 1).count == 1)
            #expect(try await commands.devicesWithPendingCommands() == ["C1"])
            #expect(try await commands.commandCounts() == [.pending: 3])
        }
    }

    @Test(arguments: Backend.cases) func dispatchTakesTheOldestDeliverableCommandAndExpiresStaleOnesOnTheWay(
        _ backend: Backend
    ) async throws {
        try await BackendStores.with(backend) { stores in
            let commands = stores.devices
            let stale = try await commands.queue(
                BackendStores.command(#"{"command":{"action":"get_power_stats"},"ttl_seconds":1}"#, nowMs: 0),
                deviceID: "Q",
                nowMs: 0,
                maxPending: 10
            )
            let live = try await commands.queue(
                BackendStores.command(#"{"command":{"action":"reset_power_stats"}}"#),
                deviceID: "Q",
                nowMs: 1,
                maxPending: 10
            )
            let dispatched = try #require(try await commands.dispatchNext(deviceID: "Q", address: "10.0.0.1", nowMs: 5_000))
            #expect(dispatched.commandID == live.command.commandID && dispatched.status == .dispatched && dispatched.dispatchedAtMs == 5_000)
            #expect(try await commands.command(stale.command.commandID)?.status == .expired)
            #expect(try await commands.dispatchNext(deviceID: "Q", address: "10.0.0.1", nowMs: 6_000) == nil, "never delivered twice")
            #expect(try await commands.dispatchNext(deviceID: "OTHER", address: "10.0.0.1", nowMs: 6_000) == nil)
        }
    }

    @Test(arguments: Backend.cases) func aResultCountsOnlyFromWhereItsCommandWentAndOnlyOnce(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let commands = stores.devices
            let queued = try await commands.queue(
                BackendStores.command(#"{"command":{"action":"get_power_stats"}}"#),
                deviceID: "RS",
                nowMs: 0,
                maxPending: 10
            )
            let id = queued.command.commandID
            let ok = CommandResult(commandID: id, succeeded: true, executedAt: "2026-12-05T10:00:00Z", resultJSON: #"{"a":1}"#, errorMessage: nil)
            await #expect(throws: CommandStoreError.wrongState(commandID: id, status: .pending)) {
                try await commands.recordResult(ok, deviceID: "RS", address: "10.0.0.1", nowMs: 1)
            }
            _ = try await commands.dispatchNext(deviceID: "RS", address: "10.0.0.1", nowMs: 10)
            await #expect(throws: CommandStoreError.notFound(id)) {
                try await commands.recordResult(ok, deviceID: "RS", address: "10.9.9.9", nowMs: 11)
            }
            await #expect(throws: CommandStoreError.notFound(id)) {
                try await commands.recordResult(ok, deviceID: "OTHER", address: "10.0.0.1", nowMs: 11)
            }
            // Timed out first: a late result is still the truth about what the device did.
            #expect(try await commands.sweepCommands(nowMs: 100_000, resultTimeoutMs: 60_000) == (["RS"], []))
            #expect(try await commands.command(id)?.status == .timedOut)
            let done = try await commands.recordResult(ok, deviceID: "RS", address: "10.0.0.1", nowMs: 100_001)
            #expect(done.status == .completed && done.resultStatus == "success" && done.resultJSON == #"{"a":1}"# && done.finishedAtMs == 100_001)
            await #expect(throws: CommandStoreError.wrongState(commandID: id, status: .completed)) {
                try await commands.recordResult(ok, deviceID: "RS", address: "10.0.0.1", nowMs: 100_002)
            }
        }
    }

    @Test(arguments: Backend.cases) func cancelAndSweepEndPendingCommands(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let commands = stores.devices
            let plain = try BackendStores.command(#"{"command":{"action":"get_power_stats"}}"#)
            let first = try await commands.queue(plain, deviceID: "S", nowMs: 0, maxPending: 10)
            let cancelled = try await commands.cancelCommand(first.command.commandID, nowMs: 5)
            #expect(cancelled.status == .cancelled && cancelled.finishedAtMs == 5)
            await #expect(throws: CommandStoreError.wrongState(commandID: first.command.commandID, status: .cancelled)) {
                try await commands.cancelCommand(first.command.commandID, nowMs: 6)
            }
            await #expect(throws: CommandStoreError.notFound("nope")) { try await commands.cancelCommand("nope", nowMs: 6) }
            _ = try await commands.queue(
                BackendStores.command(#"{"command":{"action":"get_power_stats"},"ttl_seconds":2}"#),
                deviceID: "S",
                nowMs: 0,
                maxPending: 10
            )
            #expect(try await commands.sweepCommands(nowMs: 1_000, resultTimeoutMs: 60_000) == ([], []))
            #expect(try await commands.sweepCommands(nowMs: 3_000, resultTimeoutMs: 60_000) == ([], ["S"]))
            #expect(try await commands.commandCounts() == [.cancelled: 1, .expired: 1])
            #expect(try await commands.devicesWithPendingCommands().isEmpty)
        }
    }

    /// A device polling through two instances at once: each command is dispatched once, oldest first.
    @Test(arguments: Backend.cases) func pollsThroughTwoInstancesAtOnceDispatchEachCommandOnce(_ backend: Backend) async throws {
        try await BackendStores.with(backend, instances: 2) { instances in
            var queued: [String] = []
            for value in 1...3 {
                let request = try BackendStores.command(#"{"command":{"action":"set_power","value":\#(value * 100)}}"#)
                queued.append(try await instances[value % 2].devices.queue(request, deviceID: "TWO", nowMs: 10, maxPending: 10).command.commandID)
            }
            let dispatched = try await withThrowingTaskGroup(of: String?.self) { group in
                for i in 0..<12 {
                    group.addTask { try await instances[i % 2].devices.dispatchNext(deviceID: "TWO", address: "10.0.0.1", nowMs: 20)?.commandID }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(dispatched.sorted() == queued.sorted(), "each of the 3 commands once, out of 12 polls")
            #expect(try await instances[0].devices.commandCounts() == [.dispatched: 3])
        }
    }
}

/// Registry events as a test sees them.
final class EventLog: Sendable {
    private let events = Mutex<[RegistryEvents.Event]>([])
    func append(_ event: RegistryEvents.Event) { events.withLock { $0.append(event) } }
    var evicted: [String] {
        events.withLock { $0.flatMap { event -> [String] in if case .evicted(let ids) = event { ids } else { [] } } }
    }
    var admitted: [String] {
        events.withLock { $0.flatMap { event -> [String] in if case .admitted(let ids) = event { ids } else { [] } } }
    }
}
