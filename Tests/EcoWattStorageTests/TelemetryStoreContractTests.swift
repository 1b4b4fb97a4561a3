import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import Testing

/// The storage seam's contract (issue 17): the same tests against every backend of ``TelemetryStore`` and
/// ``OutboxStore`` — in memory and SQLite (PostgreSQL joins when it lands). A backend passes only if it behaves exactly like the others.
@Suite struct TelemetryStoreContractTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case memory, sqlite
        var testDescription: String { rawValue }
    }

    /// Runs `body` with a fresh store of `backend` (SQLite: a temporary file with its writer running).
    static func withStore(_ backend: Backend, _ body: (any TelemetryStore & OutboxStore) async throws -> Void) async throws {
        switch backend {
        case .memory:
            try await body(InMemoryTelemetryStore())
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let database = try EcoWattDatabase(path: directory.appendingPathComponent("ecowatt.sqlite").path)
            let writer = GroupCommitWriter(database: database)
            let loop = Task { try await writer.run() }
            do {
                try await body(SQLiteTelemetryStore(database: database, writer: writer))
            } catch {
                writer.finish()
                _ = try? await loop.value
                throw error
            }
            writer.finish()
            try await loop.value
            try database.close()
        }
    }

    static func upload(_ device: String, nonce: UInt32, values: [[UInt16]] = [[2300, 50], [2301, 51]]) -> IngestRecord {
        IngestRecord.example(device, nonce: nonce, values: values)
    }

    @Test(arguments: Backend.allCases) func aDeviceNeverSeenHasNoNonceAndAFreshModel(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
            let state = try await store.ingestState(deviceID: "NEW")
            #expect(state.lastNonce == nil)
            #expect(state.stream == DeviceStreamState())
            #expect(try await store.latestSample(deviceID: "NEW") == nil)
            #expect(try await store.packets(deviceID: "NEW", limit: 10).isEmpty)
        }
    }

    @Test(arguments: Backend.allCases) func anAcceptedUploadStoresItsNonceModelPacketsAndSamples(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
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

    @Test(arguments: Backend.allCases) func aNonceThatDoesNotIncreaseIsRefusedAndStoresNothing(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
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

    /// Identical uploads at once (a resend racing its original): exactly one commits.
    @Test(arguments: Backend.allCases) func identicalUploadsAtOnceCommitExactlyOnce(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
            let committed = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<16 {
                    group.addTask { (try? await store.submit(Self.upload("RACE", nonce: 30)).value()) != nil }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(committed == 1, "one of 16 identical uploads commits, the others are refused")
            let packets = try await store.packets(deviceID: "RACE", limit: 100)
            let samples = try await store.samples(deviceID: "RACE", fromMs: 0, toMs: 100_000, limit: 100)
            #expect(packets.count == 1 && samples.count == 2)
        }
    }

    @Test(arguments: Backend.allCases) func aNonceResetForgetsTheNonceOnce(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
            #expect(try await store.submitNonceReset(deviceID: "D3").value() == false, "nothing to forget")
            try await store.submit(Self.upload("D3", nonce: 40)).value()
            #expect(try await store.submitNonceReset(deviceID: "D3").value() == true)
            #expect(try await store.ingestState(deviceID: "D3").lastNonce == nil)
            try await store.submit(Self.upload("D3", nonce: 1)).value()
            #expect(try await store.ingestState(deviceID: "D3").lastNonce == 1)
        }
    }

    @Test(arguments: Backend.allCases) func theStreamModelOfAKnownDeviceIsStored(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
            try await store.submit(Self.upload("D4", nonce: 50)).value()
            var model = try await store.ingestState(deviceID: "D4").stream
            model.bootSignal(atMs: 60_000)
            try await store.submitStreamState(deviceID: "D4", state: model).value()
            #expect(try await store.ingestState(deviceID: "D4").stream == model)
            #expect(try await store.ingestState(deviceID: "D4").lastNonce == 50, "the nonce is untouched")
        }
    }

    @Test(arguments: Backend.allCases) func deviceKeysAreSetReplacedAndRemoved(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
            #expect(try await store.deviceKeys().isEmpty)
            try await store.setDeviceKey(deviceID: "K1", key: Array(repeating: 1, count: 32))
            try await store.setDeviceKey(deviceID: "K2", key: Array(repeating: 2, count: 16))
            try await store.setDeviceKey(deviceID: "K1", key: Array(repeating: 3, count: 32))
            #expect(try await store.deviceKeys() == ["K1": Array(repeating: 3, count: 32), "K2": Array(repeating: 2, count: 16)])
            try await store.setDeviceKey(deviceID: "K1", key: nil)
            #expect(try await store.deviceKeys().keys.sorted() == ["K2"])
        }
    }

    @Test(arguments: Backend.allCases) func aRefusedNonceJumpIsCountedWithoutTouchingTheNonce(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
            try await store.submit(Self.upload("D5", nonce: 70)).value()
            try await store.recordNonceJumpRefused(deviceID: "D5", nonce: 9_000_000)
            #expect(try await store.ingestState(deviceID: "D5").lastNonce == 70)
        }
    }

    // MARK: - OutboxStore

    /// An upload queued for the MQTT feed comes back from the outbox with its packet's fields, samples and times, in
    /// id order, page by page; deleting through an id removes exactly the acknowledged prefix.
    @Test(arguments: Backend.allCases) func queuedPacketsComeBackInOrderWithTheirSamples(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
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
    @Test(arguments: Backend.allCases) func anUndecodablePacketIsQueuedWithItsReason(_ backend: Backend) async throws {
        try await Self.withStore(backend) { store in
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
}
