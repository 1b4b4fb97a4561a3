/// Decoder for marker 0x01: `[0x01][bits][count&0xFF][MSB-first big-endian bit stream]` (spec §3.4).
public enum BitPackDecoder {
    /// Number of whole values a (possibly truncated) blob holds.
    public static func availableValues(in blob: [UInt8]) -> Int {
        guard blob.count >= 3, (1...16).contains(blob[1]) else { return 0 }
        return (blob.count - 3) * 8 / Int(blob[1])
    }

    /// Decodes `count` values (from the packet metadata; the header count byte is ignored).
    public static func decode(_ blob: [UInt8], count: Int) throws(CodecError) -> [UInt16] {
        try PacketLimits.checkValueCount(count)
        guard blob.count >= 3 else { throw .tooShort(needed: 3, have: blob.count) }
        let bits = Int(blob[1])
        guard (1...16).contains(bits) else { throw .corrupt("bit width \(bits) outside 1...16") }
        let needed = 3 + (count * bits + 7) / 8
        guard blob.count >= needed else { throw .tooShort(needed: needed, have: blob.count) }
        var values = [UInt16]()
        values.reserveCapacity(count)
        let mask: UInt32 = (1 << UInt32(bits)) - 1
        var accumulator: UInt32 = 0
        var available = 0
        var position = 3
        for _ in 0..<count {
            while available < bits {
                accumulator = (accumulator << 8) | UInt32(blob[position])
                position += 1
                available += 8
            }
            available -= bits
            values.append(UInt16(truncatingIfNeeded: (accumulator >> UInt32(available)) & mask))
            accumulator &= (1 << UInt32(available)) &- 1
        }
        return values
    }
}
