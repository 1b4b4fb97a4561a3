/// Decoder for marker 0xD0: `[0xD0][count&0xFF][U][U × float32 LE][LSB-first indices of width bitlen(U)]`
/// (spec §3.4).
public enum DictionaryDecoder {
    /// Values whose indices are whole in a blob cut on the wire (spec §3.6.2): 0 when the value table itself was cut.
    public static func availableValues(in blob: [UInt8]) -> Int {
        guard blob.count >= 3, blob[2] > 0 else { return 0 }
        let entries = Int(blob[2])
        let width = Int.bitWidth - entries.leadingZeroBitCount
        let indexBase = 3 + 4 * entries
        return blob.count > indexBase ? (blob.count - indexBase) * 8 / width : 0
    }

    public static func decode(_ blob: [UInt8], count: Int) throws(CodecError) -> [UInt16] {
        try PacketLimits.checkValueCount(count)
        guard blob.count >= 3 else { throw .tooShort(needed: 3, have: blob.count) }
        let entries = Int(blob[2])
        guard entries > 0 else { throw .corrupt("empty dictionary") }
        let width = Int.bitWidth - entries.leadingZeroBitCount
        let indexBase = 3 + 4 * entries
        let needed = indexBase + (count * width + 7) / 8
        guard blob.count >= needed else { throw .tooShort(needed: needed, have: blob.count) }
        var table = [UInt16]()
        table.reserveCapacity(entries)
        for entry in 0..<entries {
            let offset = 3 + 4 * entry
            let pattern =
                UInt32(blob[offset]) | UInt32(blob[offset + 1]) << 8 | UInt32(blob[offset + 2]) << 16
                | UInt32(blob[offset + 3]) << 24
            let value = Float(bitPattern: pattern)
            guard value.isFinite, value >= 0, value <= 65535, value.rounded(.towardZero) == value else {
                throw .corrupt("dictionary entry \(entry) is not a register value")
            }
            table.append(UInt16(value))
        }
        var values = [UInt16]()
        values.reserveCapacity(count)
        let mask: UInt32 = (1 << UInt32(width)) - 1
        var accumulator: UInt32 = 0
        var available = 0
        var position = indexBase
        for _ in 0..<count {
            while available < width {
                accumulator |= UInt32(blob[position]) << UInt32(available)
                position += 1
                available += 8
            }
            let index = Int(accumulator & mask)
            accumulator >>= UInt32(width)
            available -= width
            guard index < entries else { throw .corrupt("index \(index) outside a table of \(entries)") }
            values.append(table[index])
        }
        return values
    }
}
