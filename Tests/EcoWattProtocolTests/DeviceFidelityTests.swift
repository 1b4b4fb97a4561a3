import EcoWattProtocol
import EcoWattTestSupport
import Testing

/// Issue 15: every sample a field device keeps reaches the store with the value it read and the time it read it, when
/// its uploads fail and its backlog arrives out of order, when it re-sends after a lost 200, when NTP syncs late or
/// `millis()` wraps, when its interval changes and when its reads take time.
@Suite struct DeviceFidelityTests {
    /// Every stored packet against the readings: decoded values exact (0x50 aside), times within `tolerance`.
    static func check(
        _ server: DecodingServer,
        _ device: FieldDevice,
        tolerance: Int64 = 1000,
        skipTimesOfFirst: Int = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for (index, packet) in server.packets.enumerated() {
            guard let samples = packet.samples else { continue }
            guard let truth = device.truth(for: packet) else {
                Issue.record("no batch read for \(FieldDevice.key(packet))", sourceLocation: sourceLocation)
                continue
            }
            if !packet.approximate {
                #expect(samples == truth.prefix(samples.count).map(\.values), "values of \(FieldDevice.key(packet))", sourceLocation: sourceLocation)
            }
            guard index >= skipTimesOfFirst else { continue }
            for (stored, reading) in zip(packet.sampleTimesMs, truth) {
                #expect(abs(stored - reading.timeMs) <= tolerance, "time \(stored) vs read at \(reading.timeMs)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func anOutageBacklogResentInPushBackOrderDecodesEverySampleExactly() {
        // Single-sample batches (0x71 after the eighth); 13 upload periods fail, fewer than the ring's 20 slots.
        var device = FieldDevice()
        var server = DecodingServer()
        let start = device.nowMs
        device.outages = [start + 300_000...start + 500_000]
        let uploads = device.run(until: start + 900_000)
        let ordered = zip(uploads, uploads.dropFirst()).allSatisfy { pair in
            pair.0.payload.packets.last.map { $0.timestamp } ?? 0 < pair.1.payload.packets.first.map { $0.timestamp } ?? .max
        }
        #expect(!ordered, "the backlog arrives out of order")
        var completed = 0
        for upload in uploads {
            let before = server.stored.values.filter { $0.samples == nil }.count
            server.receive(upload)
            completed += max(0, before - server.stored.values.filter { $0.samples == nil }.count)
        }
        #expect(server.packets.count == device.batchCount)
        #expect(server.packets.allSatisfy { $0.samples != nil }, "\(server.packets.filter { $0.samples == nil }.count) undecoded")
        #expect(server.packets.filter { $0.marker == 0x71 }.count > 30)
        #expect(completed > 0, "0x71 packets that arrived before their predecessors were decoded when they came")
        Self.check(server, device)
        #expect(server.state.trusted)
    }

    @Test func rebootsWithoutA0x71AndAnOutageRightAfterTheLastOneStillDecodeTheNewBootInTimeOrder() {
        // The corpus's firmware run, boots 2 to 4: two short boots that never reach 0x71 (so nothing decides whether
        // they happened), then a boot whose first 13 upload periods fail: its backlog arrives out of order, first
        // packets last.
        var device = FieldDevice()
        var server = DecodingServer()
        for upload in device.run(until: device.nowMs + 300_000) { server.receive(upload) }
        for (length, outage) in [(100_000 as Int64, false), (50_000, false), (600_000, true)] {
            device.nowMs += 8_000
            device.boot()
            server.bootSignal(atMs: device.nowMs + 2_000)
            if outage { device.outages = [device.nowMs + 5_000...device.nowMs + 200_000] }
            for upload in device.run(until: device.nowMs + length) { server.receive(upload) }
        }
        #expect(server.packets.allSatisfy { $0.samples != nil }, "\(server.packets.filter { $0.samples == nil }.count) undecoded")
        #expect(server.packets.filter { $0.marker == 0x71 }.count > 40)
        Self.check(server, device)
        #expect(server.state.hypotheses.count == 1 && server.state.context == device.queue.compressor.context)
    }

    @Test func aLongerOutageOverflowsTheRingAndTheLostBatchIsGivenUpUntilTheNextBoot() {
        var device = FieldDevice()
        var server = DecodingServer()
        let start = device.nowMs
        device.outages = [start + 300_000...start + 800_000]  // 34 periods: the ring drops the oldest
        for upload in device.run(until: start + 1_300_000) { server.receive(upload) }
        let undecoded = server.packets.filter { $0.samples == nil }
        #expect(!undecoded.isEmpty && undecoded.allSatisfy { $0.reason == .temporalStateUnknown })
        #expect(!server.state.trusted)
        Self.check(server, device)  // nothing decoded wrongly
        // A reboot gives a fresh model.
        device.nowMs += 5_000
        device.boot()
        server.bootSignal(atMs: device.nowMs + 2_000)
        let before = server.stored.count
        for upload in device.run(until: device.nowMs + 400_000) { server.receive(upload) }
        let afterReboot = server.packets.filter { $0.serial > Int64(before) }
        #expect(afterReboot.allSatisfy { $0.samples != nil })
        #expect(afterReboot.contains { $0.marker == 0x71 })
        Self.check(server, device)
    }

    @Test func aBatchResentAfterALost200IsStoredOnceAndAdvancesTheModelOnce() {
        var device = FieldDevice()
        var server = DecodingServer()
        device.lostResponses = [11_012, 11_013, 11_020]
        for upload in device.run(until: device.nowMs + 600_000) { server.receive(upload) }
        #expect(server.resends >= 3)
        #expect(server.packets.count == device.batchCount, "each batch stored once")
        #expect(server.packets.allSatisfy { $0.samples != nil })
        Self.check(server, device)
    }

    @Test func anNTPSyncMidBootIsNotALostBatchAndTheTimesBeforeItAreEstimated() {
        var device = FieldDevice()
        device.syncMs = device.nowMs + 200_000
        var server = DecodingServer()
        for upload in device.run(until: device.nowMs + 600_000) { server.receive(upload) }
        #expect(server.packets.allSatisfy { $0.samples != nil }, "0x71 decodes across the switch")
        #expect(server.packets.filter { $0.marker == 0x71 }.count > 20)
        let estimated = server.packets.filter(\.timeEstimated)
        #expect(estimated.count >= 10 && estimated.allSatisfy { $0.lastSampleEpochMs < device.syncMs + 1000 })
        Self.check(server, device, tolerance: 1_500)
        #expect(server.state.trusted)
    }

    @Test func aMillisWrapIsNotALostBatch() {
        var device = FieldDevice()
        device.syncMs = .max
        device.bootMs = device.nowMs - (Int64(1) << 32) + 120_000  // millis() wraps two minutes from now
        var server = DecodingServer()
        for upload in device.run(until: device.nowMs + 600_000) { server.receive(upload) }
        #expect(server.packets.allSatisfy { $0.samples != nil })
        #expect(server.packets.filter { $0.marker == 0x71 }.count > 20)
        Self.check(server, device, tolerance: 1_500)
        let times = server.packets.flatMap(\.sampleTimesMs)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 < $1 }, "one time line across the wrap")
    }

    @Test func samplesTakenBeforeAnIntervalChangeKeepTheirSpacing() {
        // Sampling every 5 s, uploads every 15 s; the interval becomes 15 s and the next uploads already report it
        // while they carry samples taken 5 s apart (the firmware's 11003 of the corpus).
        var device = FieldDevice()
        device.intervalMs = 5_000
        device.reportedInterval = 5
        var server = DecodingServer()
        for upload in device.run(until: device.nowMs + 120_000) { server.receive(upload) }
        device.reportedInterval = 15
        for upload in device.run(until: device.nowMs + 15_000) { server.receive(upload) }
        device.intervalMs = 15_000
        for upload in device.run(until: device.nowMs + 120_000) { server.receive(upload) }
        Self.check(server, device, skipTimesOfFirst: 1)
        let times = server.packets.flatMap(\.sampleTimesMs)
        #expect(Set(times).count == times.count, "no two samples share a time")
    }

    @Test func aLongBatchIsSpreadOverTheRealSensorPeriodWithItsReadTime() {
        // Sampling 5 s with 1 s Modbus reads (a 6 s period), uploads every 120 s: 20 samples per packet, whose nominal
        // spacing would drift by 19 s.
        var device = FieldDevice()
        device.intervalMs = 5_000
        device.reportedInterval = 5
        device.readMs = 1_000
        device.uploadMs = 120_000
        var server = DecodingServer()
        for upload in device.run(until: device.nowMs + 900_000) { server.receive(upload) }
        #expect(server.packets.allSatisfy { $0.sampleCount >= 19 })
        Self.check(server, device, skipTimesOfFirst: 1)
    }
}
