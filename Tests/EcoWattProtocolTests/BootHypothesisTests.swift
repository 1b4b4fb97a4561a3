import EcoWattProtocol
import EcoWattTestSupport
import Testing

/// Issue 14: an unsigned boot signal never discards the encoder model. A forged one leaves every 0x71 packet
/// decodable; a real reboot still gives a fresh model, also when a 0x71 packet comes within 8 batches of it.
@Suite struct BootHypothesisTests {
    /// A device running the firmware's encoder: batches in, uploads (one packet each) out, with the true readings.
    struct Device {
        var compressor = SmartCompressor()
        var clockMs: Int64 = 1_764_300_000_000
        var step = 0

        /// Reboots the encoder (RAM lost); NTP-synced time goes on.
        mutating func reboot() {
            compressor = SmartCompressor()
            clockMs += 20_000
        }

        /// One batch of `samples` samples of `layout`; returns the upload and the values the device read.
        mutating func batch(_ layout: [Int], samples: Int = 1, intervalSeconds: Int = 15) -> (UploadPayload, [[UInt16]]) {
            var rows: [[UInt16]] = []
            for _ in 0..<samples {
                step += 1
                clockMs += Int64(intervalSeconds) * 1000
                rows.append(layout.map { UInt16(2000 + $0 * 100 + (step * 7 + $0 * 3) % 23) })
            }
            let selection = (0..<layout.count * samples).map { layout[$0 % layout.count] }
            let blob = compressor.compress(rows.flatMap { $0 }, selection: selection)
            let packet = UploadBuilder.Packet(
                blob: blob,
                registerLayout: layout,
                sampleCount: samples,
                timestamp: UInt32(truncatingIfNeeded: clockMs)
            )
            let inner = UploadBuilder.innerJSON(
                deviceID: "BOOT",
                timestamp: UInt64(clockMs / 1000 + 1),
                samplingInterval: intervalSeconds,
                packets: [packet]
            )
            return (try! UploadPayload(parsing: Array(inner.utf8)), rows)
        }
    }

    /// Decodes `upload` as the server does and returns the packet, checking exact values when decoded.
    static func decode(
        _ upload: UploadPayload,
        _ truth: [[UInt16]],
        _ state: inout DeviceStreamState,
        failedAttempts: UInt32 = 0
    ) -> DecodedPacket {
        let arrival = (upload.timestamp ?? 0) * 1000 + 200
        let packet = DeviceStreamDecoder.decode(upload, arrivalMs: arrival, failedAttempts: failedAttempts, state: &state).packets[0]
        if let samples = packet.samples { #expect(samples == truth, "decoded values are the readings") }
        return packet
    }

    static let layout = [0, 1, 9]

    @Test func forgedBootSignalsAtAnyPointLeaveEvery0x71PacketDecodable() {
        for forgedAt in [0, 3, 8, 9, 12, 20, 21] {
            var device = Device()
            var state = DeviceStreamState()
            var delta = 0
            for index in 0..<30 {
                // Forged: the device did not reboot.
                if index == forgedAt || index == forgedAt + 5 { state.bootSignal(atMs: device.clockMs + 1000) }
                let (upload, truth) = device.batch(Self.layout)
                let packet = Self.decode(upload, truth, &state)
                #expect(packet.samples != nil, "forged at \(forgedAt): batch \(index) (\(packet.reason?.rawValue ?? ""))")
                if packet.marker == 0x71 { delta += 1 }
            }
            #expect(delta >= 20, "forged at \(forgedAt): \(delta) 0x71 packets")
        }
    }

    @Test func aRealRebootStillGivesAFreshModel() {
        var device = Device()
        var state = DeviceStreamState()
        for _ in 0..<12 {
            let (upload, truth) = device.batch(Self.layout)
            #expect(Self.decode(upload, truth, &state).samples != nil)
        }
        device.reboot()
        state.bootSignal(atMs: device.clockMs)
        var delta = 0
        for index in 0..<20 {
            let (upload, truth) = device.batch(Self.layout)
            let packet = Self.decode(upload, truth, &state)
            #expect(packet.samples != nil, "batch \(index) after the reboot")
            if packet.marker == 0x71 { delta += 1 }
        }
        #expect(delta >= 10)
        #expect(state.context == device.compressor.context, "the model follows the rebooted encoder")
    }

    @Test func aRebootRestoresDecodingAfterTheModelWasLost() {
        var device = Device()
        var state = DeviceStreamState()
        for _ in 0..<10 {
            let (upload, truth) = device.batch(Self.layout)
            _ = Self.decode(upload, truth, &state)
        }
        // Batches the server never sees: an outage of 24 upload periods (48 failed attempts) overflowed the device's
        // 20-packet ring. The gap in sample time can hide a lost batch, so the model cannot follow the device any more.
        for _ in 0..<3 { _ = device.batch(Self.layout) }
        let (afterLoss, lossTruth) = device.batch(Self.layout, intervalSeconds: 15)
        let lost = Self.decode(afterLoss, lossTruth, &state, failedAttempts: 48)
        #expect(!state.trusted)
        #expect(lost.marker != 0x71 || lost.samples == nil)
        device.reboot()
        state.bootSignal(atMs: device.clockMs)
        var decoded0x71 = 0
        for _ in 0..<20 {
            let (upload, truth) = device.batch(Self.layout)
            let packet = Self.decode(upload, truth, &state)
            #expect(packet.samples != nil)
            if packet.marker == 0x71, packet.samples != nil { decoded0x71 += 1 }
        }
        #expect(decoded0x71 >= 10)
    }

    /// A batch of 14 values right after the reboot overruns the encoder's layout buffer and sets its buffer-full flag,
    /// so the rebooted encoder writes 0x71 from its third batch: the two models fit and disagree, and the reboot wins.
    @Test func a0x71PacketWithinEightBatchesOfARealRebootDecodesExactly() {
        let layout = [0, 1, 2, 3, 4, 5, 9]
        var device = Device()
        var state = DeviceStreamState()
        for _ in 0..<12 {
            let (upload, truth) = device.batch(layout)
            #expect(Self.decode(upload, truth, &state).samples != nil)
        }
        device.reboot()
        state.bootSignal(atMs: device.clockMs)
        var early: [DecodedPacket] = []
        let (overrun, overrunTruth) = device.batch(layout, samples: 2)
        early.append(Self.decode(overrun, overrunTruth, &state))
        for _ in 0..<5 {
            let (upload, truth) = device.batch(layout)
            early.append(Self.decode(upload, truth, &state))
        }
        let within = early.filter { $0.marker == 0x71 }
        #expect(!within.isEmpty, "the rebooted encoder wrote 0x71 within 8 batches")
        #expect(within.allSatisfy { $0.samples != nil })
        #expect(state.hypotheses.count == 1 && state.context == device.compressor.context)
    }

    @Test func anUnsyncedUptimeThatRestartsProvesTheRebootAndOneThatGoesOnDisprovesIt() {
        // Without NTP an upload carries the device's uptime (signed): a boot start later than the known one proves a
        // reboot even without a boot signal; the same start disproves a forged signal at once.
        var device = FieldDevice()
        device.syncMs = .max
        var server = DecodingServer()
        for upload in device.run(until: device.nowMs + 300_000) { server.receive(upload) }
        #expect(server.state.clock.bootEpochMs.map { abs($0 - device.bootMs) <= 1000 } == true)
        server.bootSignal(atMs: device.nowMs)  // forged
        for upload in device.run(until: device.nowMs + 30_000) { server.receive(upload) }
        #expect(server.state.hypotheses.count == 1, "the uptime went on: no reboot")
        device.nowMs += 20_000
        device.boot()  // no boot message reached the server
        for upload in device.run(until: device.nowMs + 200_000) { server.receive(upload) }
        #expect(server.state.context == device.queue.compressor.context, "the model follows the rebooted encoder")
        #expect(server.packets.allSatisfy { $0.samples != nil })
    }

    @Test func aLateSensorReadIsNotALostBatchUnlessTheRingCanHaveOverflowed() {
        // A failed upload period (two attempts) reorders the backlog; only more failed periods than the ring holds can
        // drop a batch. A minute without a sample is then a sampling gap, not a lost batch.
        for (failedAttempts, keepsTrust) in [(UInt32(0), true), (1, true), (2, true), (38, true), (40, false)] {
            var device = Device()
            var state = DeviceStreamState()
            for _ in 0..<10 {
                let (upload, truth) = device.batch(Self.layout)
                _ = Self.decode(upload, truth, &state)
            }
            device.clockMs += 60_000  // a minute without a sample (a slow Modbus read, or an outage)
            let (upload, _) = device.batch(Self.layout)
            _ = DeviceStreamDecoder.decode(upload, arrivalMs: (upload.timestamp ?? 0) * 1000, failedAttempts: failedAttempts, state: &state)
            #expect(state.trusted == keepsTrust, "\(failedAttempts) failed attempts")
        }
    }
}
