/// Encoder for marker 0x01, the firmware's `compressBinaryBitPacked` (spec §3.4):
/// `[0x01][bits][count&0xFF][MSB-first big-endian bit stream, zero-padded]`.
public enum BitPackEncoder {
    /// The width the firmware picks: `max(8, min(16, bitlen(max(values))))`, with `bitlen(0) = 1`.
    public static func bitWidth(for values: [UInt16]) -> Int {
        let largest = values.max() ?? 0
        let length = largest == 0 ? 1 : UInt16.bitWidth - largest.leadingZeroBitCount
        return max(8, min(16, length))
    }

    /// Encodes `values` exactly as the firmware does.
    public static func encode(_ values: [UInt16]) -> [UInt8] {
        let bits = bitWidth(for: values)
        var blob: [UInt8] = [0x01, UInt8(bits), UInt8(truncatingIfNeeded: values.count)]
        blob.reserveCapacity(3 + (values.count * bits + 7) / 8)
        var accumulator: UInt32 = 0
        var pending = 0
        for value in values {
            accumulator = (accumulator << UInt32(bits)) | UInt32(value)
            pending += bits
            while pending >= 8 {
                pending -= 8
                blob.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(pending)))
            }
            accumulator &= (1 << UInt32(pending)) &- 1
        }
        if pending > 0 {
            blob.append(UInt8(truncatingIfNeeded: accumulator << UInt32(8 - pending)))
        }
        return blob
    }
}
