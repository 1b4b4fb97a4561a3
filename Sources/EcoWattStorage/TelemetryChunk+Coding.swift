import EcoWattProtocol

/// The chunk blob, format 1:
///
///     blob    := 0x01 · layout-count · layout-id* · packet-count · packet*
///     packet  := flags · method · Δnonce · [index] · [marker] · count · compressed · [original] · [Δserial]
///                · ΔΔlast · Δlag · [reason] · [detail] · [blob] · [rows]
///     rows    := [row-count] · times · value*
///
/// All numbers are LEB128 varints, signed ones zigzag; Δ is the difference to the previous packet of the chunk
/// (ΔΔ: of the steps between last-sample times; lag: arrival minus last sample). Times of a steady sampling interval
/// that end at the last-sample stamp take no bytes when the interval did not change, and the values are per-register
/// differences to the previous row (of the previous packet for a packet's first row). Device numbers are hostile:
/// every difference is taken with wrapping arithmetic, so any value round-trips.
extension TelemetryChunk {
    static let formatVersion: UInt8 = 1
    /// Method labels stored as one byte (any other label is stored as text).
    static let knownMethods = ["bitpack", "temporal", "dictionary", "semantic", "raw", "other", ""]

    private struct Flags: OptionSet {
        let rawValue: UInt64
        // The flags of a typical packet fit in the low seven bits (one varint byte).
        static let decoded = Flags(rawValue: 1 << 0)
        static let marker = Flags(rawValue: 1 << 1)
        static let serial = Flags(rawValue: 1 << 2)
        static let nextSerial = Flags(rawValue: 1 << 3)
        static let steadySameInterval = Flags(rawValue: 1 << 4)
        static let completeRows = Flags(rawValue: 1 << 5)
        static let approximate = Flags(rawValue: 1 << 6)
        static let truncated = Flags(rawValue: 1 << 7)
        static let timeEstimated = Flags(rawValue: 1 << 8)
        static let reason = Flags(rawValue: 1 << 9)
        static let detail = Flags(rawValue: 1 << 10)
        static let blob = Flags(rawValue: 1 << 11)
        static let methodText = Flags(rawValue: 1 << 12)
        static let original = Flags(rawValue: 1 << 13)
        static let index = Flags(rawValue: 1 << 14)
        static let steadyNewInterval = Flags(rawValue: 1 << 15)
        static let irregularRows = Flags(rawValue: 1 << 16)
    }

    /// What the previous packet leaves for the next one's differences.
    private struct Context {
        var started = false
        var nonce: Int64 = 0
        var serial: Int64 = 0
        var last: Int64 = 0
        var lastStep: Int64 = 0
        var lag: Int64 = 0
        var interval: Int64 = 0
        var row: [Int64]

        init(width: Int) { row = Array(repeating: 0, count: width) }

        mutating func value(at column: Int) -> Int64 {
            while row.count <= column { row.append(0) }
            return row[column]
        }
    }

    /// The blob (see the format above).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 32 + packets.count * 32)
        writer.byte(Self.formatVersion)
        writer.unsigned(layout.count)
        for id in layout { writer.signed(Int64(id)) }
        writer.unsigned(packets.count)
        var context = Context(width: layout.count)
        for packet in packets { encode(packet, into: &writer, context: &context) }
        return writer.bytes
    }

    /// The original size the device reports for a complete packet of this layout (stored only when it differs).
    private func defaultOriginalSize(_ sampleCount: Int) -> Int? {
        let (values, overflow) = sampleCount.multipliedReportingOverflow(by: layout.count * 2)
        return overflow ? nil : values
    }

    private func encode(_ packet: ChunkPacket, into writer: inout ByteWriter, context: inout Context) {
        var flags: Flags = []
        let methodCode = Self.knownMethods.firstIndex(of: packet.method)
        if methodCode == nil { flags.insert(.methodText) }
        if packet.approximate { flags.insert(.approximate) }
        if packet.truncated { flags.insert(.truncated) }
        if packet.timeEstimated { flags.insert(.timeEstimated) }
        if packet.marker != nil { flags.insert(.marker) }
        if packet.reason != nil { flags.insert(.reason) }
        if packet.detail != nil { flags.insert(.detail) }
        if packet.blob != nil { flags.insert(.blob) }
        if packet.packetIndex != 0 { flags.insert(.index) }
        if defaultOriginalSize(packet.sampleCount) != packet.originalSize { flags.insert(.original) }
        if let serial = packet.serial {
            flags.insert(serial == context.serial &+ 1 && context.started ? [.serial, .nextSerial] : .serial)
        }
        let rows = packet.samples
        var interval: Int64?
        if let rows {
            flags.insert(.decoded)
            if rows.count != packet.sampleTimesMs.count || rows.contains(where: { $0.count != layout.count }) {
                flags.insert(.irregularRows)
            } else if rows.count == packet.sampleCount {
                flags.insert(.completeRows)
            }
            if !flags.contains(.irregularRows), let step = Self.steadyInterval(packet.sampleTimesMs, endingAt: packet.lastSampleMs) {
                interval = step
                flags.insert(step == context.interval || rows.count == 1 ? .steadySameInterval : .steadyNewInterval)
            }
        }
        writer.unsigned(flags.rawValue)
        if let methodCode { writer.byte(UInt8(methodCode)) } else { writer.string(packet.method) }
        writer.signed(Int64(packet.nonce) &- context.nonce)
        if flags.contains(.index) { writer.signed(Int64(packet.packetIndex)) }
        if let marker = packet.marker { writer.byte(marker) }
        writer.signed(Int64(packet.sampleCount))
        writer.signed(Int64(packet.compressedSize))
        if flags.contains(.original) { writer.signed(Int64(packet.originalSize)) }
        if let serial = packet.serial, !flags.contains(.nextSerial) { writer.signed(serial &- context.serial) }
        let step = packet.lastSampleMs &- context.last
        writer.signed(context.started ? step &- context.lastStep : packet.lastSampleMs)
        let lag = packet.receivedAtMs &- packet.lastSampleMs
        writer.signed(lag &- context.lag)
        if let reason = packet.reason { writer.string(reason) }
        if let detail = packet.detail { writer.string(detail) }
        if let blob = packet.blob { writer.data(blob) }
        if let rows {
            if !flags.contains(.completeRows) { writer.unsigned(rows.count) }
            let times = packet.sampleTimesMs
            if flags.contains(.irregularRows) {
                writer.unsigned(times.count)
                Self.encodeTimes(times, from: packet.lastSampleMs, into: &writer)
            } else if flags.contains(.steadyNewInterval), let interval {
                writer.signed(interval)
            } else if !flags.contains(.steadySameInterval) {
                Self.encodeTimes(times, from: packet.lastSampleMs, into: &writer)
            }
            for row in rows {
                if flags.contains(.irregularRows) { writer.unsigned(row.count) }
                for (column, value) in row.enumerated() {
                    writer.signed(Int64(value) &- context.value(at: column))
                    context.row[column] = Int64(value)
                }
            }
        }
        context.lastStep = context.started ? step : 0
        context.started = true
        context.nonce = Int64(packet.nonce)
        if let serial = packet.serial { context.serial = serial }
        context.last = packet.lastSampleMs
        context.lag = lag
        if let interval, rows?.count ?? 0 > 1 { context.interval = interval }
    }

    private static func encodeTimes(_ times: [Int64], from start: Int64, into writer: inout ByteWriter) {
        var previous = start
        for time in times {
            writer.signed(time &- previous)
            previous = time
        }
    }

    /// The step of `times` when they are evenly spaced and end at `last` (one time at `last`: any step).
    private static func steadyInterval(_ times: [Int64], endingAt last: Int64) -> Int64? {
        guard let end = times.last, end == last else { return nil }
        guard times.count > 1 else { return 0 }
        let step = times[1] &- times[0]
        for index in 1..<times.count where times[index] &- times[index - 1] != step { return nil }
        return step
    }

    /// How many packets the blob holds, read from its header alone.
    public static func packetCount(encoded bytes: [UInt8]) throws(StoredBlobError) -> Int {
        var reader = ByteReader(bytes)
        let version = try reader.byte()
        guard version == formatVersion else { throw StoredBlobError("chunk format \(version) is not known") }
        for _ in 0..<(try reader.count(in: 0...PacketLimits.maxValues)) { _ = try reader.signed() }
        return try reader.count(in: 0...maxPackets)
    }

    /// Reads a blob written by ``encoded()``.
    public init(decoding bytes: [UInt8]) throws(StoredBlobError) {
        var reader = ByteReader(bytes)
        let version = try reader.byte()
        guard version == Self.formatVersion else { throw StoredBlobError("chunk format \(version) is not known") }
        var layout: [Int] = []
        for _ in 0..<(try reader.count(in: 0...PacketLimits.maxValues)) { layout.append(Int(truncatingIfNeeded: try reader.signed())) }
        self.init(layout: layout)
        let count = try reader.count(in: 0...Self.maxPackets)
        var context = Context(width: layout.count)
        for _ in 0..<count { packets.append(try decodePacket(&reader, context: &context)) }
        guard reader.isAtEnd else { throw StoredBlobError("chunk has bytes after its last packet") }
    }

    private func decodePacket(_ reader: inout ByteReader, context: inout Context) throws(StoredBlobError) -> ChunkPacket {
        let flags = Flags(rawValue: try reader.unsigned())
        let method: String
        if flags.contains(.methodText) {
            method = try reader.string()
        } else {
            let code = Int(try reader.byte())
            guard code < Self.knownMethods.count else { throw StoredBlobError("method code \(code) is not known") }
            method = Self.knownMethods[code]
        }
        let nonce = try reader.signed() &+ context.nonce
        let index = flags.contains(.index) ? Int(truncatingIfNeeded: try reader.signed()) : 0
        let marker = flags.contains(.marker) ? try reader.byte() : nil
        let sampleCount = Int(truncatingIfNeeded: try reader.signed())
        let compressed = Int(truncatingIfNeeded: try reader.signed())
        let original =
            flags.contains(.original) ? Int(truncatingIfNeeded: try reader.signed()) : defaultOriginalSize(sampleCount) ?? 0
        var serial: Int64?
        if flags.contains(.nextSerial) {
            serial = context.serial &+ 1
        } else if flags.contains(.serial) {
            serial = try reader.signed() &+ context.serial
        }
        let stepCode = try reader.signed()
        let last = context.started ? context.last &+ (stepCode &+ context.lastStep) : stepCode
        let lag = try reader.signed() &+ context.lag
        var packet = ChunkPacket(
            nonce: UInt32(truncatingIfNeeded: nonce),
            packetIndex: index,
            marker: marker,
            method: method,
            sampleCount: sampleCount,
            lastSampleMs: last,
            receivedAtMs: last &+ lag,
            compressedSize: compressed,
            originalSize: original
        )
        packet.approximate = flags.contains(.approximate)
        packet.truncated = flags.contains(.truncated)
        packet.timeEstimated = flags.contains(.timeEstimated)
        packet.serial = serial
        if flags.contains(.reason) { packet.reason = try reader.string() }
        if flags.contains(.detail) { packet.detail = try reader.string() }
        if flags.contains(.blob) { packet.blob = try reader.data() }
        if flags.contains(.decoded) {
            let rowCount =
                flags.contains(.completeRows) && (0...PacketLimits.maxValues).contains(sampleCount)
                ? sampleCount : try reader.count(in: 0...PacketLimits.maxValues)
            var times: [Int64] = []
            if flags.contains(.irregularRows) {
                times = try Self.decodeTimes(count: try reader.count(in: 0...PacketLimits.maxValues), from: last, &reader)
            } else if flags.contains(.steadySameInterval) || flags.contains(.steadyNewInterval) {
                let interval = flags.contains(.steadyNewInterval) ? try reader.signed() : context.interval
                times = (0..<rowCount).map { last &- Int64(rowCount - 1 - $0) &* interval }
                if rowCount > 1 { context.interval = interval }
            } else {
                times = try Self.decodeTimes(count: rowCount, from: last, &reader)
            }
            var rows: [[UInt16]] = []
            rows.reserveCapacity(rowCount)
            for _ in 0..<rowCount {
                let width = flags.contains(.irregularRows) ? try reader.count(in: 0...PacketLimits.maxValues) : layout.count
                var row: [UInt16] = []
                row.reserveCapacity(width)
                for column in 0..<width {
                    let value = try reader.signed() &+ context.value(at: column)
                    context.row[column] = value
                    row.append(UInt16(truncatingIfNeeded: value))
                }
                rows.append(row)
            }
            packet.samples = rows
            packet.sampleTimesMs = times
        }
        context.lastStep = context.started ? last &- context.last : 0
        context.started = true
        context.nonce = nonce
        if let serial { context.serial = serial }
        context.last = last
        context.lag = lag
        return packet
    }

    private static func decodeTimes(count: Int, from start: Int64, _ reader: inout ByteReader) throws(StoredBlobError) -> [Int64] {
        var times: [Int64] = []
        times.reserveCapacity(count)
        var previous = start
        for _ in 0..<count {
            previous = previous &+ (try reader.signed())
            times.append(previous)
        }
        return times
    }
}
