import EcoWattProtocol
import EcoWattStorage
import EcoWattTestSupport
import Testing

/// The contract of stored telemetry over time (issue 17), against every backend: time-range queries across many
/// packets, late decoding and re-timing, rollups and retention.
@Suite struct TelemetryHistoryContractTests {
    typealias Backend = StoreContractTests.Backend

    /// An upload of one packet: `rows` samples 5 s apart ending at `lastMs`, values `base + row`, arriving at `arrivalMs`.
    static func upload(
        _ device: String,
        nonce: UInt32,
        lastMs: Int64,
        rows: Int = 3,
        base: UInt16 = 100,
        arrivalMs: Int64? = nil
    )
        -> IngestRecord
    {
        var record = IngestRecord.example(device, nonce: nonce, values: (0..<rows).map { [base &+ UInt16($0), 7] })
        record.packets[0].lastSampleEpochMs = lastMs
        record.packets[0].sampleTimesMs = (0..<rows).map { lastMs - Int64(rows - 1 - $0) * 5_000 }
        record.receivedAtMs = arrivalMs ?? lastMs + 500
        return record
    }

    @Test(arguments: Backend.cases) func aTimeRangeAcrossManyPacketsComesBackOldestFirstAndLimited(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            // 400 uploads 15 s apart (100 minutes: several chunks), and another device in between.
            for index in 0..<400 {
                let last = 1_000_000 + Int64(index) * 15_000
                try await store.submit(Self.upload("H-1", nonce: UInt32(index + 1), lastMs: last, base: UInt16(index))).value()
                if index.isMultiple(of: 7) { try await store.submit(Self.upload("H-2", nonce: UInt32(index + 1), lastMs: last)).value() }
            }
            let all = try await store.samples(deviceID: "H-1", fromMs: 0, toMs: .max, limit: 10_000)
            #expect(all.count == 1_200)
            #expect(zip(all, all.dropFirst()).allSatisfy { $0.timestampMs <= $1.timestampMs })
            let window = try await store.samples(deviceID: "H-1", fromMs: 2_000_000, toMs: 2_600_000, limit: 10_000)
            #expect(window.first?.timestampMs == 2_000_000 && window.last?.timestampMs == 2_600_000)
            #expect(window.count == 121)
            let limited = try await store.samples(deviceID: "H-1", fromMs: 2_000_000, toMs: .max, limit: 5)
            #expect(limited.map(\.timestampMs) == Array(window.prefix(5).map(\.timestampMs)))
            #expect(try await store.samples(deviceID: "H-1", fromMs: 2_600_000, toMs: 2_000_000, limit: 10).isEmpty, "a reversed range")
            #expect(try await store.samples(deviceID: "H-1", fromMs: 0, toMs: .max, limit: 0).isEmpty)
            #expect(try await store.latestSample(deviceID: "H-1")?.timestampMs == 1_000_000 + 399 * 15_000)
            #expect(try await store.packets(deviceID: "H-1", limit: 3).map(\.nonce) == [400, 399, 398])
            #expect(Set(try await store.packets(deviceID: "H-1", limit: 1_000).map(\.id)).count == 400)
        }
    }

    @Test(arguments: Backend.cases) func rollupsFollowLateChangesOnceRefreshed(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            let hour: Int64 = 3_600_000
            // Two packets in the first minute of hour 10, one in hour 11.
            try await store.submit(Self.upload("R-1", nonce: 1, lastMs: 10 * hour + 10_000, base: 100)).value()
            try await store.submit(Self.upload("R-1", nonce: 2, lastMs: 10 * hour + 25_000, base: 200)).value()
            try await store.submit(Self.upload("R-1", nonce: 3, lastMs: 11 * hour + 15_000, base: 300)).value()
            #expect(try await store.rollups(deviceID: "R-1", resolution: .hour, fromMs: 0, toMs: 20 * hour, limit: 10).isEmpty)
            #expect(try await store.refreshRollups(limit: 10) == 1)
            #expect(try await store.refreshRollups(limit: 10) == 0)
            let hours = try await store.rollups(deviceID: "R-1", resolution: .hour, fromMs: 0, toMs: 20 * hour, limit: 10)
            #expect(hours.map(\.bucketMs) == [10 * hour, 11 * hour])
            #expect(hours.map(\.sampleCount) == [6, 3])
            let first = try #require(hours.first?.registers.first)
            #expect(first.register == 0 && first.minimum == 100 && first.maximum == 202 && first.sum == 100 + 101 + 102 + 200 + 201 + 202)
            let minutes = try await store.rollups(deviceID: "R-1", resolution: .minute, fromMs: 10 * hour, toMs: 10 * hour + 59_999, limit: 10)
            #expect(minutes.map(\.bucketMs) == [10 * hour] && minutes.first?.sampleCount == 6)
            #expect(try await store.rollups(deviceID: "R-1", resolution: .minute, fromMs: 0, toMs: 20 * hour, limit: 1).count == 1)
            // Late data for a past hour: the next refresh recomputes that hour.
            try await store.submit(Self.upload("R-1", nonce: 4, lastMs: 10 * hour + 40 * 60_000, base: 50)).value()
            #expect(try await store.refreshRollups(limit: 10) == 1)
            let again = try await store.rollups(deviceID: "R-1", resolution: .hour, fromMs: 0, toMs: 20 * hour, limit: 10)
            #expect(again.map(\.sampleCount) == [9, 3] && again.first?.registers.first?.minimum == 50)
            // An upload without samples changes nothing.
            var empty = Self.upload("R-1", nonce: 5, lastMs: 12 * hour)
            empty.packets = []
            try await store.submit(empty).value()
            #expect(try await store.refreshRollups(limit: 10) == 0)
        }
    }

    /// Every instance refreshes rollups on its own timer: two refreshing the same device at once (each recomputing the
    /// same buckets) both succeed, and the rollups end as one refresh leaves them (PostgreSQL: the second insert of a
    /// bucket was a unique violation, logged as "telemetry maintenance failed" in multi-instance runs).
    @Test(arguments: Backend.cases) func twoInstancesRefreshingRollupsAtOnceBothSucceed(_ backend: Backend) async throws {
        try await BackendStores.with(backend, instances: 2) { stores in
            let instances = stores.map(\.telemetry)
            let hour: Int64 = 3_600_000
            for round in 0..<30 {
                let last = 10 * hour + 10_000 + Int64(round) * 240_000
                try await instances[round % 2].submit(Self.upload("RR-1", nonce: UInt32(round + 1), lastMs: last)).value()
                async let first = instances[0].refreshRollups(limit: 10)
                async let second = instances[1].refreshRollups(limit: 10)
                let refreshed = try await [first, second]
                #expect(refreshed.allSatisfy { $0 <= 1 }, "\(refreshed)")
            }
            while try await instances[0].refreshRollups(limit: 10) > 0 {}
            let hours = try await instances[1].rollups(deviceID: "RR-1", resolution: .hour, fromMs: 0, toMs: 20 * hour, limit: 10)
            #expect(hours.map(\.bucketMs) == [10 * hour, 11 * hour])
            #expect(hours.map(\.sampleCount) == [45, 45], "30 uploads of 3 samples, 4 minutes apart")
        }
    }

    @Test(arguments: Backend.cases) func retentionDropsRawTelemetryByArrivalAndRollupsByBucket(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.telemetry
            let day: Int64 = 86_400_000
            // Old data arrived on day 1 (its device clock says day 50: arrival decides), new data on day 100.
            try await store.submit(Self.upload("P-1", nonce: 1, lastMs: 50 * day + 20_000, arrivalMs: 1 * day)).value()
            try await store.submit(Self.upload("P-1", nonce: 2, lastMs: 100 * day + 20_000, arrivalMs: 100 * day)).value()
            // The changed range spans 50 days: one refresh recomputes one day of it, the rest is left for the next ones.
            #expect(try await store.refreshRollups(limit: 10) == 1)
            #expect(try await store.rollups(deviceID: "P-1", resolution: .hour, fromMs: 0, toMs: 200 * day, limit: 10).count == 1)
            var rounds = 1
            while try await store.refreshRollups(limit: 10) > 0 { rounds += 1 }
            #expect(rounds == 51)
            #expect(try await store.rollups(deviceID: "P-1", resolution: .hour, fromMs: 0, toMs: 200 * day, limit: 10).count == 2)
            let cutoffs = TelemetryCutoffs(rawBeforeMs: 10 * day, minuteBeforeMs: 10 * day, hourBeforeMs: 0)
            #expect(try await store.pruneTelemetry(cutoffs, limit: 100) > 0)
            #expect(try await store.pruneTelemetry(cutoffs, limit: 100) == 0, "nothing more is older")
            #expect(try await store.samples(deviceID: "P-1", fromMs: 0, toMs: .max, limit: 100).map(\.timestampMs).allSatisfy { $0 > 99 * day })
            #expect(try await store.packets(deviceID: "P-1", limit: 10).map(\.nonce) == [2])
            // Hour rollups outlive the raw samples, and a later change next to them never recomputes them from nothing.
            try await store.submit(Self.upload("P-1", nonce: 3, lastMs: 50 * day + 60_000, arrivalMs: 100 * day)).value()
            while try await store.refreshRollups(limit: 10) > 0 {}
            let hours = try await store.rollups(deviceID: "P-1", resolution: .hour, fromMs: 0, toMs: 200 * day, limit: 10)
            #expect(hours.map(\.bucketMs) == [50 * day, 100 * day])
            #expect(hours.first?.sampleCount == 3, "the dropped hour keeps its rollup")
            // Rollups past their own cutoff go.
            let later = TelemetryCutoffs(rawBeforeMs: 10 * day, minuteBeforeMs: 10 * day, hourBeforeMs: 60 * day)
            #expect(try await store.pruneTelemetry(later, limit: 100) > 0)
            #expect(try await store.rollups(deviceID: "P-1", resolution: .hour, fromMs: 0, toMs: 200 * day, limit: 10).count == 1)
        }
    }
}
