import EcoWattProtocol
import EcoWattStorage
import Testing

/// The compact chunk format of stored telemetry (issue 17): every packet reads back exactly, whatever its numbers.
@Suite struct TelemetryChunkTests {
    static let layout = [0, 1, 5, 6, 7, 9]

    /// A packet of the spec §3.6.3 upload shape: `count` samples every 5 s ending at `lastMs`, values near `base`.
    static func packet(nonce: UInt32, serial: Int64, lastMs: Int64, count: Int = 3, base: UInt16 = 2300) -> ChunkPacket {
        var packet = ChunkPacket(
            nonce: nonce,
            packetIndex: 0,
            marker: 0x01,
            method: "bitpack",
            sampleCount: count,
            lastSampleMs: lastMs,
            receivedAtMs: lastMs &+ 420,
            compressedSize: 30,
            originalSize: count * 12
        )
        packet.serial = serial
        packet.samples = (0..<count).map { row in layout.indices.map { base &+ UInt16(($0 * 37 + row * 3) % 11) } }
        packet.sampleTimesMs = (0..<count).map { lastMs &- Int64(count - 1 - $0) * 5000 }
        return packet
    }

    @Test func aChunkOfSteadyPacketsReadsBackExactlyInUnderTenBytesPerSample() throws {
        var chunk = TelemetryChunk(layout: Self.layout)
        for index in 0..<20 {
            chunk.packets.append(
                Self.packet(nonce: 11_001 + UInt32(index), serial: Int64(index + 1), lastMs: 1_764_300_015_000 + Int64(index) * 15_000)
            )
        }
        let bytes = chunk.encoded()
        #expect(try TelemetryChunk(decoding: bytes) == chunk)
        // 60 samples of 6 registers: the device sent 10 bytes per sample; the chunk keeps every field of every packet.
        #expect(bytes.count < 60 * 10, "\(bytes.count) bytes")
    }

    @Test func undecodedTruncatedAndOddPacketsKeepEveryField() throws {
        var raw = Self.packet(nonce: 7, serial: 40, lastMs: 1_000)
        raw.samples = nil
        raw.sampleTimesMs = []
        raw.reason = "temporal_state_unknown"
        raw.detail = "reboot missed"
        raw.blob = [0x71, 0, 1, 2]
        raw.method = "a label the device made up ✓"
        raw.marker = nil
        raw.packetIndex = 3
        var cut = Self.packet(nonce: 7, serial: 12, lastMs: 900, count: 4)
        cut.truncated = true
        cut.blob = [1, 2, 3]
        cut.samples = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]
        cut.sampleTimesMs = [100, 900]
        cut.approximate = true
        cut.timeEstimated = true
        var irregular = Self.packet(nonce: 9, serial: 13, lastMs: 5_000)
        irregular.samples = [[1], [2, 3, 4, 5, 6, 7, 8]]
        irregular.sampleTimesMs = [4_000]
        var empty = Self.packet(nonce: 10, serial: 14, lastMs: 6_000)
        empty.samples = []
        empty.sampleTimesMs = []
        let chunk = TelemetryChunk(layout: Self.layout, packets: [raw, cut, irregular, empty])
        #expect(try TelemetryChunk(decoding: chunk.encoded()) == chunk)
    }

    @Test func extremeNumbersFromTheWireRoundTripWithoutTrapping() throws {
        var packets: [ChunkPacket] = []
        for (index, time) in [Int64.min, Int64.max, 0, -1, Int64.max, Int64.min].enumerated() {
            var packet = ChunkPacket(
                nonce: index.isMultiple(of: 2) ? UInt32.max : 0,
                packetIndex: index.isMultiple(of: 2) ? Int.min : Int.max,
                marker: 0xFF,
                method: "temporal",
                sampleCount: index.isMultiple(of: 2) ? Int.max : Int.min,
                lastSampleMs: time,
                receivedAtMs: index.isMultiple(of: 2) ? Int64.min : Int64.max,
                compressedSize: Int.min,
                originalSize: Int.max
            )
            packet.serial = index.isMultiple(of: 3) ? Int64.max : Int64.min
            packet.samples = [[UInt16.max, 0], [0, UInt16.max]]
            packet.sampleTimesMs = [time, time &+ Int64.max]
            packets.append(packet)
        }
        let chunk = TelemetryChunk(layout: [Int.max, Int.min], packets: packets)
        #expect(try TelemetryChunk(decoding: chunk.encoded()) == chunk)
    }

    @Test func aDamagedBlobThrowsInsteadOfTrapping() throws {
        let chunk = TelemetryChunk(layout: Self.layout, packets: [Self.packet(nonce: 1, serial: 1, lastMs: 5_000)])
        let bytes = chunk.encoded()
        for cut in 0..<bytes.count {
            #expect(throws: StoredBlobError.self) { try TelemetryChunk(decoding: Array(bytes.prefix(cut))) }
        }
        #expect(throws: StoredBlobError.self) { try TelemetryChunk(decoding: bytes + [0]) }
        #expect(throws: StoredBlobError.self) { try TelemetryChunk(decoding: [2] + bytes.dropFirst()) }
        // Any byte string either decodes or throws.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var noise = bytes
            noise[Int.random(in: 0..<noise.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            _ = try? TelemetryChunk(decoding: noise)
        }
        #expect(throws: StoredBlobError.self) { try TelemetryChunk(decoding: [1, 1, 0, 1] + Array(repeating: 0xFF, count: 12)) }
    }

    @Test func aChunkRefusesPacketsOfAnotherLayoutOrOutsideItsSpan() {
        let first = Self.packet(nonce: 1, serial: 1, lastMs: 10_000_000)
        let chunk = TelemetryChunk(layout: Self.layout, packets: [first])
        let size = chunk.encoded().count
        #expect(chunk.accepts(Self.packet(nonce: 2, serial: 2, lastMs: 10_015_000), layout: Self.layout, encodedSize: size))
        #expect(!chunk.accepts(Self.packet(nonce: 2, serial: 2, lastMs: 10_015_000), layout: [0, 1], encodedSize: size))
        #expect(
            !chunk.accepts(
                Self.packet(nonce: 2, serial: 2, lastMs: 10_000_000 + TelemetryChunk.maxSpanMs + 1),
                layout: Self.layout,
                encodedSize: size
            )
        )
        #expect(!chunk.accepts(Self.packet(nonce: 2, serial: 2, lastMs: 10_015_000), layout: Self.layout, encodedSize: TelemetryChunk.maxBytes))
        var late = Self.packet(nonce: 2, serial: 2, lastMs: 10_015_000)
        late.receivedAtMs = first.receivedAtMs + TelemetryChunk.maxSpanMs + 1
        #expect(!chunk.accepts(late, layout: Self.layout, encodedSize: size))
        var hostile = Self.packet(nonce: 2, serial: 2, lastMs: Int64.min)
        hostile.sampleTimesMs = [Int64.min]
        #expect(!chunk.accepts(hostile, layout: Self.layout, encodedSize: size))
        #expect(!TelemetryChunk(layout: Self.layout).accepts(first, layout: Self.layout, encodedSize: 0))
    }

    @Test func rollupBucketsFloorEveryTimeWithoutTrapping() {
        #expect(RollupResolution.minute.bucket(of: -1) == -60_000)
        #expect(RollupResolution.hour.bucket(of: 7_199_999) == 3_600_000)
        for time in [Int64.min, Int64.min + 1, Int64.max, 0] {
            for resolution in RollupResolution.allCases { _ = resolution.bucket(of: time) }  // a trap would end the test run
        }
    }
}
