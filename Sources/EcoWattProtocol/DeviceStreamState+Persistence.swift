/// The persisted form of ``DeviceStreamState``: written with every accepted upload, in its transaction.
///
/// Format 3 (little-endian): header, clock, disorder, fingerprints, hypotheses, entries. About 480 bytes for a device
/// in order (the model, the last packet, 24 fingerprints), growing by about 50 bytes per packet kept while a backlog is
/// re-sent.
/// Formats 1 and 2 (one model, before issue 15) are still read: their model becomes the established boot.
extension DeviceStreamState {
    static let format: UInt8 = 3

    public var serialized: [UInt8] {
        var out = ByteWriter()
        out.byte(Self.format)
        out.int64(nextSerial)
        out.optional(clock.bootEpochMs)
        out.optional(clock.lastUnsyncedArrivalMs)
        out.byte(disorder.remaining)
        out.byte(disorder.lossPossible ? 1 : 0)
        out.byte(disorder.lastUploadPackets)
        out.byte(UInt8(recent.count))
        for print in recent { out.uint(print.hash, width: 8) }
        out.optional(configurationAppliedMs)
        out.optional(trimmed?.serial)
        if let trimmed {
            out.int64(trimmed.timeMs)
            out.uint(UInt64(trimmed.intervalSeconds), width: 4)
        }
        out.byte(UInt8(hypotheses.count))
        for hypothesis in hypotheses {
            out.int64(hypothesis.startSerial)
            out.optional(hypothesis.startTimeMs)
            out.context(hypothesis.context)
            out.optional(hypothesis.frontier)
            out.optional(hypothesis.frontierTimeMs)
            out.optional(hypothesis.frontierInterval.map(Int64.init))
            out.byte(hypothesis.broken ? 1 : 0)
        }
        out.byte(UInt8(entries.count))
        for entry in entries {
            out.int64(entry.serial)
            out.int64(entry.timeMs)
            out.uint(UInt64(entry.sampleCount), width: 2)
            out.byte(UInt8(entry.layout.count))
            for register in entry.layout { out.byte(UInt8(truncatingIfNeeded: register)) }
            out.uint(UInt64(entry.intervalSeconds), width: 4)
            switch entry.content {
            case .exact(let row):
                out.byte(0)
                for value in row { out.uint(UInt64(value), width: 2) }
            case .pending(let blob):
                out.byte(1)
                out.uint(UInt64(blob.count), width: 2)
                out.bytes += blob
            case .lost:
                out.byte(2)
            }
            out.uint(UInt64(entry.storedSamples), width: 2)
            out.byte((entry.inDisorder ? 1 : 0) | (entry.holeBefore ? 2 : 0) | (entry.timeEstimated ? 4 : 0))
            out.optional(entry.timedAfter)
        }
        return out.bytes
    }

    /// Restores ``serialized`` (format 3, or the one-model formats 1 and 2); `nil` for anything else.
    public init?(serialized bytes: [UInt8]) {
        var reader = ByteReader(bytes: bytes)
        switch bytes.first {
        case 3:
            guard let state = try? Self.read3(&reader), reader.isAtEnd else { return nil }
            self = state
        case 1 where bytes.count == 192, 2 where bytes.count == 376:
            // One model (its context, trusted flag, last sample time): the established boot, its last packet trimmed.
            self.init()
            reader.offset = 1
            guard let context = try? reader.context(), let trusted = try? reader.byte(), let hasLast = try? reader.byte(),
                let last = try? reader.int64()
            else { return nil }
            hypotheses[0].context = context
            hypotheses[0].broken = trusted == 0
            hypotheses[0].frontierTimeMs = hasLast != 0 ? last : nil
        default:
            return nil
        }
    }

    private static func read3(_ reader: inout ByteReader) throws(ByteReader.End) -> DeviceStreamState {
        var state = DeviceStreamState()
        reader.offset = 1
        state.nextSerial = try reader.int64()
        state.clock.bootEpochMs = try reader.optional()
        state.clock.lastUnsyncedArrivalMs = try reader.optional()
        state.disorder.remaining = try reader.byte()
        state.disorder.lossPossible = try reader.byte() != 0
        state.disorder.lastUploadPackets = try reader.byte()
        state.recent = []
        for _ in 0..<(try reader.byte()) { state.recent.append(PacketFingerprint(hash: try reader.uint(width: 8))) }
        state.configurationAppliedMs = try reader.optional()
        if let serial = try reader.optional() {
            state.trimmed = TrimmedEntry(serial: serial, timeMs: try reader.int64(), intervalSeconds: Int(try reader.uint(width: 4)))
        }
        state.hypotheses = []
        for _ in 0..<(try reader.byte()) {
            var hypothesis = BootHypothesis(startSerial: try reader.int64(), startTimeMs: try reader.optional())
            hypothesis.context = try reader.context()
            hypothesis.frontier = try reader.optional()
            hypothesis.frontierTimeMs = try reader.optional()
            hypothesis.frontierInterval = try reader.optional().flatMap { Int(exactly: $0) }
            hypothesis.broken = try reader.byte() != 0
            state.hypotheses.append(hypothesis)
        }
        guard !state.hypotheses.isEmpty else { throw ByteReader.End() }
        for _ in 0..<(try reader.byte()) {
            let serial = try reader.int64()
            let time = try reader.int64()
            let samples = Int(try reader.uint(width: 2))
            let layout = try (0..<Int(try reader.byte())).map { _ throws(ByteReader.End) in Int(try reader.byte()) }
            let interval = Int(try reader.uint(width: 4))
            let content: ChainEntry.Content
            switch try reader.byte() {
            case 0: content = .exact(lastRow: try layout.map { _ throws(ByteReader.End) in UInt16(try reader.uint(width: 2)) })
            case 1: content = .pending(blob: try reader.take(Int(try reader.uint(width: 2))))
            case 2: content = .lost
            default: throw ByteReader.End()
            }
            let stored = Int(try reader.uint(width: 2))
            let flags = try reader.byte()
            guard PacketLimits.registerCount.contains(layout.count), PacketLimits.sampleCount(registers: layout.count).contains(samples)
            else { throw ByteReader.End() }
            var entry = ChainEntry(
                serial: serial,
                timeMs: time,
                sampleCount: samples,
                layout: layout,
                intervalSeconds: interval,
                content: content,
                storedSamples: stored,
                inDisorder: flags & 1 != 0,
                timeEstimated: flags & 4 != 0
            )
            entry.holeBefore = flags & 2 != 0
            entry.timedAfter = try reader.optional()
            state.entries.append(entry)
        }
        return state
    }
}

/// Little-endian writing of the persisted state.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func uint(_ value: UInt64, width: Int) {
        for index in 0..<width { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
    }

    mutating func int64(_ value: Int64) { uint(UInt64(bitPattern: value), width: 8) }

    mutating func optional(_ value: Int64?) {
        byte(value == nil ? 0 : 1)
        if let value { int64(value) }
    }

    mutating func context(_ context: TemporalContext) {
        for value in context.rows { uint(UInt64(value), width: 2) }
        bytes += context.lastRegisters
        bytes += [context.lastRegisterCount, context.writeIndex, context.bufferFull]
    }
}

/// Little-endian reading of the persisted state; running out of bytes throws.
struct ByteReader {
    struct End: Error {}

    let bytes: [UInt8]
    var offset = 0

    var isAtEnd: Bool { offset == bytes.count }

    mutating func byte() throws(End) -> UInt8 {
        guard offset < bytes.count else { throw End() }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint(width: Int) throws(End) -> UInt64 {
        guard bytes.count - offset >= width else { throw End() }
        defer { offset += width }
        return (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    mutating func int64() throws(End) -> Int64 { Int64(bitPattern: try uint(width: 8)) }

    mutating func optional() throws(End) -> Int64? { try byte() != 0 ? try int64() : nil }

    mutating func take(_ count: Int) throws(End) -> [UInt8] {
        guard count >= 0, bytes.count - offset >= count else { throw End() }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func context() throws(End) -> TemporalContext {
        var context = TemporalContext()
        for index in 0..<80 { context.rows[index] = UInt16(try uint(width: 2)) }
        context.lastRegisters = try take(10)
        context.lastRegisterCount = try byte()
        context.writeIndex = try byte() % 8
        context.bufferFull = try byte()
        return context
    }
}
