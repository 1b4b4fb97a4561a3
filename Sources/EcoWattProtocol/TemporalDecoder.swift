/// Decoders for the temporal markers 0x70 (base) and 0x71 (delta against ``TemporalContext``), spec §3.4.
public enum TemporalDecoder {
    /// 0x70: `[0x70][count&0xFF][count × RegID][count × uint16 LE]`.
    public static func decodeBase(_ blob: [UInt8], selection: [Int]) throws(CodecError) -> [UInt16] {
        try PacketLimits.checkSelection(selection)
        let count = selection.count
        let needed = 2 + 3 * count
        guard blob.count >= needed else { throw .tooShort(needed: needed, have: blob.count) }
        for index in 0..<count where blob[2 + index] != UInt8(truncatingIfNeeded: selection[index]) {
            throw .corrupt("register id \(blob[2 + index]) at \(index) does not match the layout")
        }
        let base = 2 + count
        return (0..<count).map { UInt16(blob[base + 2 * $0]) | UInt16(blob[base + 2 * $0 + 1]) << 8 }
    }

    /// 0x71: `[0x71][count&0xFF][delta codes]`, each value predicted from the two previous rows of `context`.
    public static func decodeDelta(
        _ blob: [UInt8],
        selection: [Int],
        context: TemporalContext
    ) throws(CodecError) -> [UInt16] {
        try PacketLimits.checkSelection(selection)
        var offset = 2
        var values = [UInt16]()
        values.reserveCapacity(selection.count)
        for register in selection {
            guard offset < blob.count else { throw .tooShort(needed: offset + 1, have: blob.count) }
            let tag = blob[offset]
            let delta: Int
            if tag & 0x80 != 0 {
                delta = Int(tag & 0x3F) * (tag & 0x40 != 0 ? -1 : 1)
                offset += 1
            } else if tag == 0x00 {
                guard offset + 1 < blob.count else { throw .tooShort(needed: offset + 2, have: blob.count) }
                delta = Int(Int8(bitPattern: blob[offset + 1]))
                offset += 2
            } else if tag == 0x01 {
                guard offset + 2 < blob.count else { throw .tooShort(needed: offset + 3, have: blob.count) }
                delta = Int(Int16(bitPattern: UInt16(blob[offset + 1]) | UInt16(blob[offset + 2]) << 8))
                offset += 3
            } else {
                throw .corrupt("bad delta tag 0x\(String(tag, radix: 16))")
            }
            let predicted = Int(context.prediction(register: register))
            values.append(UInt16(truncatingIfNeeded: predicted + delta))
        }
        guard offset == blob.count else { throw .corrupt("\(blob.count - offset) trailing bytes") }
        return values
    }
}
