/// Byte-exact model of the firmware's static `temporalBuffer` (spec §3.4, Appendix A), including the `memcpy`
/// overrun into `lastRegisterCount`, `writeIndex` and `bufferFull` when a batch has more than 10 values.
///
/// Zeroed at every device boot; must be updated with the exact values of **every** batch, in compression order.
public struct TemporalContext: Sendable, Equatable {
    /// `rows[8][10]` flattened (row-major).
    public var rows: [UInt16] = Array(repeating: 0, count: 80)
    public var lastRegisters: [UInt8] = Array(repeating: 0, count: 10)
    public var lastRegisterCount: UInt8 = 0
    public var writeIndex: UInt8 = 0
    public var bufferFull: UInt8 = 0

    public init() {}

    /// The encoder's compatibility test: 0x71 is possible only when this holds.
    public func isCompatible(with selection: [Int]) -> Bool {
        let count = selection.count
        guard bufferFull != 0, Int(lastRegisterCount) == count else { return false }
        // memcmp over the struct image starting at lastRegisters (offsets 160...); beyond offset 172 is unknown.
        for index in 0..<count {
            let expected: UInt8
            switch index {
            case 0..<10: expected = lastRegisters[index]
            case 10: expected = lastRegisterCount
            case 11: expected = writeIndex
            case 12: expected = bufferFull
            default: return false
            }
            if expected != UInt8(truncatingIfNeeded: selection[index]) { return false }
        }
        return true
    }

    /// Prediction for register `register` (`2·p1 − p2`, falling back to `p1` outside 0...65535).
    @inline(__always)
    public func prediction(register: Int) -> UInt16 {
        let index = Int(writeIndex)
        let previous = Int(rows[((index + 7) % 8) * 10 + register])
        let beforePrevious = Int(rows[((index + 6) % 8) * 10 + register])
        let predicted = 2 * previous - beforePrevious
        return (0...65535).contains(predicted) ? UInt16(predicted) : UInt16(previous)
    }

    /// The update the firmware performs after every batch, whichever method won.
    public mutating func update(values: [UInt16], selection: [Int]) {
        let base = Int(writeIndex) * 10
        for (value, register) in zip(values, selection) where PacketLimits.registerIDs.contains(register) {
            rows[base + register] = value
        }
        for index in 0..<min(selection.count, 10) {
            lastRegisters[index] = UInt8(truncatingIfNeeded: selection[index])
        }
        if selection.count > 11 { writeIndex = UInt8(truncatingIfNeeded: selection[11]) }
        if selection.count > 12 { bufferFull = UInt8(truncatingIfNeeded: selection[12]) }
        lastRegisterCount = UInt8(truncatingIfNeeded: selection.count)
        writeIndex = UInt8((Int(writeIndex) + 1) % 8)
        if writeIndex == 0 { bufferFull = 1 }
    }
}
