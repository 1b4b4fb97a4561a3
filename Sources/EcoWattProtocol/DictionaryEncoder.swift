/// Encoder for marker 0xD0, the firmware's `compressWithDictionary` (spec §3.4):
/// `[0xD0][count&0xFF][U][U × float32 LE][LSB-first indices of width bitlen(U)]`.
///
/// Like the firmware, it returns the 0x01 bit-pack blob instead when the dictionary form is not smaller than the raw
/// values (`3 + 4U + ceil(count·W/8) ≥ 2·count`).
public enum DictionaryEncoder {
    public static func encode(_ values: [UInt16]) -> [UInt8] {
        var table = [UInt16]()
        var indexOf = [UInt16: Int]()
        var indices = [Int]()
        indices.reserveCapacity(values.count)
        for value in values {
            if let index = indexOf[value] {
                indices.append(index)
            } else {
                indexOf[value] = table.count
                indices.append(table.count)
                table.append(value)
            }
        }
        let entries = table.count
        let width = Int.bitWidth - entries.leadingZeroBitCount
        let size = 3 + 4 * entries + (values.count * width + 7) / 8
        guard !values.isEmpty, size < 2 * values.count else { return BitPackEncoder.encode(values) }

        var blob: [UInt8] = [0xD0, UInt8(truncatingIfNeeded: values.count), UInt8(entries)]
        blob.reserveCapacity(size)
        for value in table {
            let pattern = Float(value).bitPattern
            blob += [
                UInt8(truncatingIfNeeded: pattern), UInt8(truncatingIfNeeded: pattern >> 8),
                UInt8(truncatingIfNeeded: pattern >> 16), UInt8(truncatingIfNeeded: pattern >> 24),
            ]
        }
        var accumulator: UInt32 = 0
        var pending = 0
        for index in indices {
            accumulator |= UInt32(index) << UInt32(pending)
            pending += width
            while pending >= 8 {
                blob.append(UInt8(truncatingIfNeeded: accumulator))
                accumulator >>= 8
                pending -= 8
            }
        }
        if pending > 0 { blob.append(UInt8(truncatingIfNeeded: accumulator)) }
        return blob
    }
}
