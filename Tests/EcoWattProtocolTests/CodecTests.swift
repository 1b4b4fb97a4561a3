import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing

@Suite struct CodecTests {
    @Test func bitPackSpecExample() throws {
        let blob = Conformance.bytes(hex: "010c129000340470461c44ae9020340470461c44b19010350480461c54af")
        let values = try BitPackDecoder.decode(blob, count: 18)
        #expect(values == [2304, 52, 71, 70, 452, 1198, 2306, 52, 71, 70, 452, 1201, 2305, 53, 72, 70, 453, 1199])
    }

    @Test func bitPackTooShortIsAnError() {
        let blob = Conformance.bytes(hex: "010c1290003404")
        #expect(throws: CodecError.tooShort(needed: 30, have: 7)) { try BitPackDecoder.decode(blob, count: 18) }
        #expect(BitPackDecoder.availableValues(in: blob) == 2)
    }

    @Test func dictionarySpecExample() throws {
        let blob = Conformance.bytes(hex: "d01204000010450000504200008e420000e24388b420d282480b")
        let values = try DictionaryDecoder.decode(blob, count: 18)
        #expect(values == Array([2304, 52, 71, 71, 452, 52].map(UInt16.init)) + [2304, 52, 71, 71, 452, 52] + [2304, 52, 71, 71, 452, 52])
    }

    @Test func dictionaryIndexOutsideTableIsCorrupt() {
        // U = 1 (width 1); an index bit of 1 points past the one-entry table.
        let blob: [UInt8] = [0xD0, 2, 1, 0x00, 0x00, 0x10, 0x45, 0b10]
        #expect(throws: CodecError.self) { try DictionaryDecoder.decode(blob, count: 2) }
    }

    @Test func semanticSpecExample() throws {
        let blob = Conformance.bytes(
            hex: "5024020418000103040607090a0c0d0f101213151618191b1c1e1f2122140e18070c0205080b0e1114171a1d2023b0040c"
        )
        let values = try SemanticRLEDecoder.decode(blob, count: 36)
        for sample in 0..<12 {
            #expect(Array(values[sample * 3..<sample * 3 + 3]) == [3604, 3604, 1200])
        }
    }

    @Test func semanticZeroRunIsCorruptNotAHang() {
        let blob: [UInt8] = [0x50, 1, 1, 7, 1, 0, 0xB0, 0x04, 0]
        #expect(throws: CodecError.corrupt("zero-length run")) { try SemanticRLEDecoder.decode(blob, count: 1) }
    }

    @Test func temporalContextOverrunMatchesSpec() {
        var context = TemporalContext()
        // 12 values: selection[11] overwrites writeIndex before the increment.
        let selection = [0, 1, 5, 6, 7, 9, 0, 1, 5, 6, 7, 9]
        context.update(values: Array(repeating: 7, count: 12), selection: selection)
        #expect(context.writeIndex == UInt8((9 + 1) % 8))
        #expect(context.lastRegisterCount == 12)
        #expect(!context.isCompatible(with: selection))
        // 13 values: selection[12] lands in bufferFull.
        var other = TemporalContext()
        other.update(values: Array(repeating: 1, count: 13), selection: Array(repeating: 3, count: 13))
        #expect(other.bufferFull == 3)
    }

    @Test func streamStateRoundTripsWithBootsEntriesAndFingerprints() {
        var state = DeviceStreamState()
        state.hypotheses[0].context.update(values: [1, 2, 3], selection: [0, 1, 9])
        state.hypotheses[0].broken = true
        state.hypotheses[0].frontierTimeMs = 1_763_990_149_000
        state.clock.bootEpochMs = 1_763_990_000_000
        state.disorder = Disorder()
        state.disorder.remaining = 2
        state.disorder.lossPossible = true
        #expect(DeviceStreamState(serialized: state.serialized) == state)
        state.bootSignal(atMs: 1_763_990_150_000)
        state.hypotheses[1].context.update(values: [4, 5, 6], selection: [0, 1, 9])
        state.entries = [
            ChainEntry(
                serial: 7,
                timeMs: 1_763_990_155_000,
                sampleCount: 2,
                layout: [0, 1, 9],
                intervalSeconds: 5,
                content: .exact(lastRow: [4, 5, 6]),
                storedSamples: 2,
                inDisorder: true,
                timeEstimated: false
            ),
            ChainEntry(
                serial: 8,
                timeMs: 1_763_990_160_000,
                sampleCount: 1,
                layout: [0, 1, 9],
                intervalSeconds: 5,
                content: .pending(blob: [0x71, 3, 1, 2]),
                storedSamples: 0,
                inDisorder: false,
                timeEstimated: true
            ),
            ChainEntry(
                serial: 9,
                timeMs: 1_763_990_170_000,
                sampleCount: 1,
                layout: [0],
                intervalSeconds: 5,
                content: .lost,
                storedSamples: 1,
                inDisorder: false,
                timeEstimated: false
            ),
        ]
        state.entries[2].holeBefore = true
        state.entries[2].timedAfter = 8
        _ = state.isResend(PacketFingerprint(timestamp: 12, sampleCount: 3, blob: [1, 2, 3]))
        let restored = DeviceStreamState(serialized: state.serialized)
        #expect(restored == state)
        #expect(DeviceStreamState(serialized: state.serialized + [0]) == nil, "trailing bytes")
        #expect(DeviceStreamState(serialized: Array(state.serialized.dropLast())) == nil, "cut")
        #expect(DeviceStreamState(serialized: [9] + state.serialized.dropFirst()) == nil, "unknown format")
    }

    @Test func streamStatesWrittenBeforeTheChainStillLoad() {
        // Format 1 (192 bytes): rows, layout, count, write index, buffer full, trusted, last sample, interval.
        var bytes: [UInt8] = [1] + (0..<80).flatMap { [UInt8($0), 0] } + Array(0..<10) + [3, 5, 1, 0, 1]
        withUnsafeBytes(of: Int64(1_763_990_149_000).littleEndian) { bytes += $0 }
        withUnsafeBytes(of: Int64(15).littleEndian) { bytes += $0 }
        let state = try! #require(DeviceStreamState(serialized: bytes))
        #expect(state.context.rows[79] == 79)
        #expect(state.context.writeIndex == 5)
        #expect(!state.trusted)
        #expect(state.hypotheses.count == 1)
        #expect(state.hypotheses[0].frontierTimeMs == 1_763_990_149_000)
        // Format 2 (376 bytes): the same model, then the interval and a boot candidate (dropped: undecided).
        var two: [UInt8] = [2] + bytes[1..<184] + bytes[184..<192] + [1] + bytes[1..<184]
        two[174] = 1
        let second = try! #require(DeviceStreamState(serialized: two))
        #expect(second.trusted)
        #expect(second.context.rows[79] == 79)
    }

    @Test func timestampReconstructionPicksTheClosestWrap() {
        let truth: Int64 = 1_764_300_013_500
        let wire = UInt32(truncatingIfNeeded: truth)
        #expect(wire == 3_363_422_140)
        #expect(DeviceStreamDecoder.reconstructEpochMs(wire, near: truth + 1_500) == truth)
        #expect(DeviceStreamDecoder.reconstructEpochMs(wire, near: truth + (1 << 31) - 10) == truth)
    }

    /// Every blob the firmware's encoder produced, decoded directly; 0x71 by walking each boot's sequence with a
    /// model that starts at zero and is updated with what the device really read.
    @Test func everyConformanceBlobDecodes() throws {
        let lines = try Conformance.lines("blobs.jsonl")
        #expect(lines.count == 367)
        var contexts = [String: TemporalContext]()
        var checked = [String: Int]()
        for line in lines.sorted(by: {
            ($0["sequence"] as! String, $0["index"] as! Int) < ($1["sequence"] as! String, $1["index"] as! Int)
        }) {
            let sequence = line["sequence"] as! String
            let layout = line["register_layout"] as! [Int]
            let samples = line["sample_count"] as! Int
            let blob = Conformance.bytes(hex: line["blob_hex"] as! String)
            #expect(blob.count == line["blob_len"] as! Int)
            let selection = (0..<layout.count * samples).map { layout[$0 % layout.count] }
            let expected = (line["values"] as! [[Int]]).flatMap { $0.map { UInt16($0) } }
            var context = contexts[sequence] ?? TemporalContext()
            let decoded: [UInt16]
            switch line["marker"] as! String {
            case "0x01": decoded = try BitPackDecoder.decode(blob, count: selection.count)
            case "0xD0": decoded = try DictionaryDecoder.decode(blob, count: selection.count)
            case "0x50": decoded = try SemanticRLEDecoder.decode(blob, count: selection.count)
            case "0x71":
                #expect(context.isCompatible(with: selection), "\(sequence) #\(line["index"]!)")
                decoded = try TemporalDecoder.decodeDelta(blob, selection: selection, context: context)
            case let marker:
                Issue.record("unexpected marker \(marker)")
                continue
            }
            #expect(decoded == expected, "\(sequence) #\(line["index"]!)")
            let truth = (line["true_values"] as? [[Int]]).map { $0.flatMap { $0.map { UInt16($0) } } } ?? expected
            context.update(values: truth, selection: selection)
            contexts[sequence] = context
            checked[line["marker"] as! String, default: 0] += 1
        }
        #expect(checked == ["0x01": 242, "0xD0": 20, "0x50": 18, "0x71": 87])
    }
}

@Suite struct HexCodingTests {
    @Test func byteLabelsAndStrictDecoding() {
        #expect(HexCoding.byteLabel(0x01) == "0x01")
        #expect(HexCoding.byteLabel(0xD0) == "0xD0")
        #expect(HexCoding.decode("0aFF") == [0x0A, 0xFF])
        #expect(HexCoding.decode("0aFF", lowercaseOnly: true) == nil)
        #expect(HexCoding.decode("abc") == nil)
        #expect(HexCoding.encode([0x2B, 0x7E]) == "2b7e")
    }
}
