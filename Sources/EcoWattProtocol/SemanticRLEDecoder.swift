/// Decoder for marker 0x50, the firmware's lossy "semantic RLE" (spec §3.4).
///
/// The output is what the blob encodes (run heads, low byte only for 1-byte types), not what the device measured.
public enum SemanticRLEDecoder {
    /// Value width in bits per semantic type id; types of ≤ 8 bits store one byte per run value.
    public static func typeBits(_ type: UInt8) -> Int? {
        switch type {
        case 0: 16
        case 1: 12
        case 2: 8
        case 3: 6
        case 4: 9
        case 5: 7
        case 6: 10
        case 7: 13
        default: nil
        }
    }

    public static func decode(_ blob: [UInt8], count: Int) throws(CodecError) -> [UInt16] {
        try PacketLimits.checkValueCount(count)
        guard blob.count >= 3 else { throw .tooShort(needed: 3, have: blob.count) }
        var output = [UInt16](repeating: 0, count: count)
        var filled = [Bool](repeating: false, count: count)
        var offset = 3
        func byte() throws(CodecError) -> UInt8 {
            guard offset < blob.count else { throw .tooShort(needed: offset + 1, have: blob.count) }
            defer { offset += 1 }
            return blob[offset]
        }
        for _ in 0..<Int(blob[2]) {
            let type = try byte()
            guard let bits = typeBits(type) else { throw .corrupt("unknown semantic type \(type)") }
            let size = Int(try byte())
            var positions = [Int]()
            positions.reserveCapacity(size)
            var wrap = 0
            var previous = -1
            for _ in 0..<size {
                var position = Int(try byte()) + wrap
                if position <= previous {
                    wrap += 256
                    position += 256
                }
                guard position < count else { throw .corrupt("position \(position) beyond \(count) values") }
                previous = position
                positions.append(position)
            }
            var written = 0
            while written < size {
                let value: UInt16
                if bits <= 8 {
                    value = UInt16(try byte())
                } else {
                    let low = UInt16(try byte())
                    value = low | UInt16(try byte()) << 8
                }
                let run = Int(try byte())
                guard run > 0 else { throw .corrupt("zero-length run") }
                for _ in 0..<min(run, size - written) {
                    output[positions[written]] = value
                    filled[positions[written]] = true
                    written += 1
                }
            }
        }
        guard !filled.contains(false) else { throw .corrupt("groups do not cover all \(count) values") }
        return output
    }
}
