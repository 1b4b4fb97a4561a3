/// Encoder for marker 0x50, the firmware's lossy `compressWithSemanticRLE` (spec §3.4).
///
/// Values are grouped by semantic type (first-appearance order); each group stores its positions (`& 0xFF`) and runs
/// of values within the type's tolerance of the run's head, reconstructed as the head. One-byte types keep only the
/// head's low byte, exactly like the firmware.
public enum SemanticRLEEncoder {
    /// Semantic type id of a register (`0` for an id outside the table).
    public static func typeID(of register: Int) -> UInt8 {
        switch register {
        case 0: 1
        case 1: 2
        case 2: 3
        case 3, 4: 4
        case 5, 6: 5
        case 7: 6
        case 8, 9: 7
        default: 0
        }
    }

    /// Largest distance from the run's head that still joins the run.
    public static func tolerance(ofType type: UInt8) -> Int {
        switch type {
        case 1: 10
        case 2: 5
        case 3: 1
        case 4: 15
        case 5: 3
        case 6: 5
        case 7: 50
        default: 0
        }
    }

    public static func encode(_ values: [UInt16], selection: [Int]) -> [UInt8] {
        var groups = [(type: UInt8, values: [UInt16], positions: [Int])]()
        for (position, (value, register)) in zip(values, selection).enumerated() {
            let type = typeID(of: register)
            if let index = groups.firstIndex(where: { $0.type == type }) {
                groups[index].values.append(value)
                groups[index].positions.append(position)
            } else {
                groups.append((type, [value], [position]))
            }
        }
        var blob: [UInt8] = [0x50, UInt8(truncatingIfNeeded: values.count), UInt8(truncatingIfNeeded: groups.count)]
        for group in groups {
            blob.append(group.type)
            blob.append(UInt8(truncatingIfNeeded: group.values.count))
            blob += group.positions.map { UInt8(truncatingIfNeeded: $0) }
            let oneByte = (SemanticRLEDecoder.typeBits(group.type) ?? 16) <= 8
            let tolerance = tolerance(ofType: group.type)
            var start = 0
            while start < group.values.count {
                let head = group.values[start]
                var run = 1
                while start + run < group.values.count, run < 255,
                    abs(Int(group.values[start + run]) - Int(head)) <= tolerance
                {
                    run += 1
                }
                blob.append(UInt8(truncatingIfNeeded: head))
                if !oneByte { blob.append(UInt8(truncatingIfNeeded: head >> 8)) }
                blob.append(UInt8(run))
                start += run
            }
        }
        return blob
    }
}
