import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import Testing

/// The storage seam's contract (issue 17): the same tests against every backend of ``TelemetryStore``,
/// ``OutboxStore`` and ``BindingStore`` — in memory, SQLite and PostgreSQL (issue 22). A backend passes only if it
/// behaves exactly like the others.
@Suite struct StoreContractTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case memory, sqlite, postgres
        var testDescription: String { rawValue }

        /// Every backend; PostgreSQL where a server runs or one is required (``PostgresServer``).
        static var cases: [Backend] { allCases.filter { $0 != .postgres || PostgresServer.enabled } }
    }

    /// A fresh SQLite database in a temporary directory with its writer running, for the length of `body`.
    static func withSQLite(_ body: (EcoWattDatabase, GroupCommitWriter) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try EcoWattDatabase(path: directory.appendingPathComponent("ecowatt.sqlite").path)
        let writer = GroupCommitWriter(database: database)
        let loop = Task { try await writer.run() }
        do {
            try await body(database, writer)
        } catch {
            writer.finish()
            _ = try? await loop.value
            throw error
        }
        writer.finish()
        try await loop.value
        try database.close()
    }

    static func upload(_ device: String, nonce: UInt32, values: [[UInt16]] = [[2300, 50], [2301, 51]]) -> IngestRecord {
        IngestRecord.example(device, nonce: nonce, values: values)
    }

    @Test(arguments: Backend.cases) func aDeviceNeverSeenHasNoNonceAndAFreshModel(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            let state = try await store.ingestState(deviceID: "NEW")
            #expect(state.lastNonce == nil)
            #expect(state.stream == DeviceStreamState())
            #expect(try await store.latestSample(deviceID: "NEW") == nil)
            #expect(try await store.packets(deviceID: "NEW", limit: 10).isEmpty)
        }
    }

    @Test(arguments: Backend.cases) func anAcceptedUploadStoresItsNonceModelPacketsAndSamples(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            try await store.submit(Self.upload("D1", nonce: 10)).value()
            try await store.submit(Self.upload("D1", nonce: 11, values: [[2310, 60], [2311, 61], [2312, 62]])).value()
            let state = try await store.ingestState(deviceID: "D1")
            #expect(state.lastNonce == 11)
            #expect(state.stream.hypotheses[0].frontierTimeMs == 11_000)
            let latest = try #require(try await store.latestSample(deviceID: "D1"))
            #expect(latest.rawValues == [2312, 62] && latest.timestampMs == 11_000 && latest.registerLayout == [0, 1])
            let all = try await store.samples(deviceID: "D1", fromMs: 0, toMs: 20_000, limit: 100)
            #expect(all.map(\.rawValues) == [[2300, 50], [2301, 51], [2310, 60], [2311, 61], [2312, 62]], "oldest first")
            #expect(try await store.samples(deviceID: "D1", fromMs: 10_700, toMs: 20_000, limit: 2).map(\.rawValues) == [[2310, 60], [2311, 61]])
            let packets = try await store.packets(deviceID: "D1", limit: 10)
            #expect(packets.map(\.nonce) == [11, 10], "newest first")
            #expect(packets.allSatisfy { $0.decoded && $0.method == "bitpack" && $0.sampleCount > 0 })
            #expect(try await store.packets(deviceID: "D1", limit: 1).count == 1)
            #expect(try await store.latestSample(deviceID: "OTHER") == nil, "devices do not see each other's rows")
        }
    }

    @Test(arguments: Backend.cases) func aNonceThatDoesNotIncreaseIsRefusedAndStoresNothing(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            try await store.submit(Self.upload("D2", nonce: 20)).value()
            for stale: UInt32 in [20, 19] {
                await #expect(throws: StoreError.nonceNotIncreasing(deviceID: "D2", nonce: stale, stored: 20)) {
                    try await store.submit(Self.upload("D2", nonce: stale)).value()
                }
            }
            #expect(try await store.packets(deviceID: "D2", limit: 10).count == 1)
            #expect(try await store.ingestState(deviceID: "D2").lastNonce == 20)
        }
    }

    /// Identical uploads at once (a resend racing its original), taken by two instances: exactly one commits.
    @Test(arguments: Backend.cases) func identicalUploadsAtOnceCommitExactlyOnce(_ backend: Backend) async throws {
        try await BackendStores.with(backend, instances: 2) { stores in
            let instances = stores.map(\.telemetry)
            let store = instances[0]
            let committed = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<16 {
                    group.addTask { (try? await instances[i % 2].submit(Self.upload("RACE", nonce: 30)).value()) != nil }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(committed == 1, "one of 16 identical uploads commits, the others are refused")
            let packets = try await store.packets(deviceID: "RACE", limit: 100)
            let samples = try await store.samples(deviceID: "RACE", fromMs: 0, toMs: 100_000, limit: 100)
            #expect(packets.count == 1 && samples.count == 2)
        }
    }

    /// Several instances cache a device's state: a commit decoded against a state another instance changed since is
    /// refused as `stateChanged` (decode again), a replay stays a replay, and every state write counts a version.
    @Test(arguments: Backend.cases) func aCommitDecodedAgainstAnOutdatedStateIsRefused(_ backend: Backend) async throws {
        try await BackendStores.with(backend, instances: 2) { stores in
            let (first, second) = (stores[0].telemetry, stores[1].telemetry)
            #expect(try await first.ingestState(deviceID: "CAS").version == 0)
            var upload = Self.upload("CAS", nonce: 10)
            upload.expectedVersion = 0
            try await first.submit(upload).value()
            #expect(try await second.ingestState(deviceID: "CAS").version == 1)
            // The second instance decoded nonce 11 against version 0 (before the first's commit): refused.
            var stale = Self.upload("CAS", nonce: 11)
            stale.expectedVersion = 0
            await #expect(throws: StoreError.stateChanged(deviceID: "CAS")) { try await second.submit(stale).value() }
            var replay = Self.upload("CAS", nonce: 10)
            replay.expectedVersion = 0
            await #expect(throws: StoreError.nonceNotIncreasing(deviceID: "CAS", nonce: 10, stored: 10)) { try await second.submit(replay).value() }
            stale.expectedVersion = 1
            try await second.submit(stale).value()
            try await first.submitStreamState(deviceID: "CAS", state: DeviceStreamState()).value()
            #expect(try await first.ingestState(deviceID: "CAS").version == 3, "an upload and a stream write since")
            #expect(try await first.submitNonceReset(deviceID: "CAS").value())
            #expect(try await second.ingestState(deviceID: "CAS").version == 4)
            var afterReset = Self.upload("CAS", nonce: 5)
            afterReset.expectedVersion = 3
            await #expect(throws: StoreError.stateChanged(deviceID: "CAS")) { try await first.submit(afterReset).value() }
            #expect(try await first.packets(deviceID: "CAS", limit: 10).count == 2, "nothing of the refused commits stored")
        }
    }

    @Test(arguments: Backend.cases) func aNonceResetForgetsTheNonceOnce(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            #expect(try await store.submitNonceReset(deviceID: "D3").value() == false, "nothing to forget")
            try await store.submit(Self.upload("D3", nonce: 40)).value()
            #expect(try await store.submitNonceReset(deviceID: "D3").value() == true)
            #expect(try await store.ingestState(deviceID: "D3").lastNonce == nil)
            try await store.submit(Self.upload("D3", nonce: 1)).value()
            #expect(try await store.ingestState(deviceID: "D3").lastNonce == 1)
        }
    }

    @Test(arguments: Backend.cases) func theStreamModelOfAKnownDeviceIsStored(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            try await store.submit(Self.upload("D4", nonce: 50)).value()
            var model = try await store.ingestState(deviceID: "D4").stream
            model.bootSignal(atMs: 60_000)
            try await store.submitStreamState(deviceID: "D4", state: model).value()
            #expect(try await store.ingestState(deviceID: "D4").stream == model)
            #expect(try await store.ingestState(deviceID: "D4").lastNonce == 50, "the nonce is untouched")
        }
    }

    @Test(arguments: Backend.cases) func aRefusedNonceJumpIsCountedWithoutTouchingTheNonce(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            try await store.submit(Self.upload("D5", nonce: 70)).value()
            try await store.recordNonceJumpRefused(deviceID: "D5", nonce: 9_000_000)
            #expect(try await store.ingestState(deviceID: "D5").lastNonce == 70)
        }
    }

    // MARK: - OutboxStore

    /// An upload queued for the MQTT feed comes back from the outbox with its packet's fields, samples and times, in
    /// id order, page by page; deleting through an id removes exactly the acknowledged prefix.
    @Test(arguments: Backend.cases) func queuedPacketsComeBackInOrderWithTheirSamples(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            for nonce: UInt32 in 1...3 {
                var upload = Self.upload("OUT-\(nonce % 2)", nonce: nonce * 10, values: [[UInt16(nonce), 1], [UInt16(nonce), 2]])
                upload.queueForFeed = true
                try await store.submit(upload).value()
            }
            try await store.submit(Self.upload("QUIET", nonce: 5)).value()  // not queued for the feed
            #expect(try await store.outboxCount() == 3)
            let all = try await store.outboxBatch(afterID: 0, limit: 10)
            #expect(all.map(\.deviceID) == ["OUT-1", "OUT-0", "OUT-1"])
            #expect(all.map(\.id) == all.map(\.id).sorted() && Set(all.map(\.id)).count == 3)
            let first = try #require(all.first)
            #expect(first.samples == [[1, 1], [1, 2]] && first.sampleTimesMs == [9_900, 10_000])
            #expect(first.method == "bitpack" && first.registerLayout == [0, 1] && first.lastSampleMs == 10_000)
            #expect(first.receivedAtMs == 10_000 && first.originalSize == 8 && first.compressedSize == 10 && first.reason == nil)
            let page = try await store.outboxBatch(afterID: all[0].id, limit: 1)
            #expect(page.map(\.id) == [all[1].id])
            try await store.deleteOutbox(through: all[1].id)
            #expect(try await store.outboxCount() == 1)
            #expect(try await store.outboxBatch(afterID: 0, limit: 10).map(\.id) == [all[2].id])
        }
    }

    /// An undecodable packet is queued too (the feed says why), without samples.
    @Test(arguments: Backend.cases) func anUndecodablePacketIsQueuedWithItsReason(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            var upload = Self.upload("RAW", nonce: 7)
            upload.packets[0].samples = nil
            upload.packets[0].reason = .unknownMarker
            upload.queueForFeed = true
            try await store.submit(upload).value()
            let queued = try await store.outboxBatch(afterID: 0, limit: 10)
            #expect(queued.count == 1)
            #expect(queued.first?.samples == [] && queued.first?.reason == "unknown_marker")
        }
    }

    // MARK: - BindingStore

    /// A telemetry store and the binding store that sees its uploads' addresses, with small caps on held messages.
    static func withBindingStores(
        _ backend: Backend,
        _ body: (any TelemetryStore, any BindingStore) async throws -> Void
    ) async throws {
        var retention = RetentionPolicy()
        retention.heldMessages = RowCap(perDevice: 2, total: 4)
        try await BackendStores.with(backend, retention: retention) { stores in try await body(stores.telemetry, stores.bindings) }
    }

    /// A verified upload binds its device to the address it came from; one without an address keeps the binding.
    @Test(arguments: Backend.cases) func aVerifiedUploadBindsItsDeviceToItsAddress(_ backend: Backend) async throws {
        try await Self.withBindingStores(backend) { telemetry, bindings in
            #expect(try await bindings.bindings().isEmpty)
            var first = Self.upload("B1", nonce: 10)
            first.clientAddress = "10.0.0.5"
            try await telemetry.submit(first).value()
            try await telemetry.submit(Self.upload("B1", nonce: 11)).value()  // no address: the binding stays
            try await telemetry.submit(Self.upload("B2", nonce: 12)).value()
            #expect(try await bindings.bindings() == ["B1": DeviceBindingRecord(address: "10.0.0.5", atMs: 10_000)])
            var moved = Self.upload("B1", nonce: 13)
            moved.clientAddress = "10.0.0.6"
            try await telemetry.submit(moved).value()
            #expect(try await bindings.bindings()["B1"] == DeviceBindingRecord(address: "10.0.0.6", atMs: 13_000))
        }
    }

    /// Held messages: one per device, address and kind (a later one replaces it), the device's newest within its cap,
    /// all within the total, oldest first; deleted by id.
    @Test(arguments: Backend.cases) func heldMessagesAreReplacedCappedAndDeleted(_ backend: Backend) async throws {
        try await Self.withBindingStores(backend) { _, store in
            func message(_ device: String, _ address: String, _ kind: HeldMessageKind, _ at: Int64) -> HeldMessage {
                HeldMessage(deviceID: device, address: address, kind: kind, body: .object([("at", .int(at))]), receivedAtMs: at)
            }
            let first = try await store.hold(message("H1", "10.0.0.1", .registration, 1))
            let replaced = try await store.hold(message("H1", "10.0.0.1", .registration, 2))
            #expect(replaced.id > first.id)
            #expect(try await store.heldMessages().map(\.receivedAtMs) == [2], "the same kind from the same address replaces")
            _ = try await store.hold(message("H1", "10.0.0.1", .bootReport, 3))
            _ = try await store.hold(message("H1", "10.0.0.2", .registration, 4))
            #expect(try await store.heldMessages().map(\.receivedAtMs) == [3, 4], "the device's newest two")
            _ = try await store.hold(message("H2", "10.0.0.3", .complete, 5))
            _ = try await store.hold(message("H3", "10.0.0.4", .complete, 6))
            let all = try await store.heldMessages()
            #expect(all.map(\.receivedAtMs) == [3, 4, 5, 6] && all.map(\.id) == all.map(\.id).sorted())
            _ = try await store.hold(message("H4", "10.0.0.5", .complete, 7))
            let trimmed = try await store.heldMessages()
            #expect(trimmed.count <= 4 && trimmed.last?.receivedAtMs == 7, "within the total, the newest kept")
            #expect(trimmed.first?.body == .object([("at", .int(trimmed.first!.receivedAtMs))]), "bodies come back as stored")
            try await store.deleteHeld(trimmed.prefix(2).map(\.id))
            #expect(try await store.heldMessages().map(\.id) == trimmed.dropFirst(2).map(\.id))
        }
    }
}
