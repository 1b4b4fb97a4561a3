/// Encoder for the temporal markers, the firmware's `compressWithTemporalDelta` (spec §3.4).
///
/// Emits 0x71 (deltas against the two previous rows) when `context` is compatible with the selection, 0x70 (base
/// values) otherwise, and then updates `context` the way the firmware does after **every** batch, including the
/// `memcpy` overrun for more than 10 values.
public enum TemporalEncoder {
    public static func encode(_ values: [UInt16], selection: [Int], context: inout TemporalContext) -> [UInt8] {
        let count = values.count
        var blob: [UInt8]
        if context.isCompatible(with: selection) {
            blob = [0x71, UInt8(truncatingIfNeeded: count)]
            for (value, register) in zip(values, selection) {
                let delta = Int16(truncatingIfNeeded: Int(value) - Int(context.prediction(register: register)))
                switch delta {
                case -63...63:
                    blob.append(0x80 | (delta < 0 ? 0x40 : 0) | UInt8(delta.magnitude))
                case -127...127:
                    blob += [0x00, UInt8(bitPattern: Int8(delta))]
                default:
                    let bits = UInt16(bitPattern: delta)
                    blob += [0x01, UInt8(truncatingIfNeeded: bits), UInt8(truncatingIfNeeded: bits >> 8)]
                }
            }
        } else {
            blob = [0x70, UInt8(truncatingIfNeeded: count)]
            blob.reserveCapacity(2 + 3 * count)
            blob += selection.map { UInt8(truncatingIfNeeded: $0) }
            for value in values {
                blob += [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8)]
            }
        }
        context.update(values: values, selection: selection)
        return blob
    }
}
