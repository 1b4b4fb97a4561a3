/// A stored blob is not what its writer wrote (a damaged database file, or a format this build does not know).
public struct StoredBlobError: Error, Equatable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// Appends LEB128 varints (zigzag for signed values) and byte strings: the compact formats of stored telemetry.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func unsigned(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func unsigned(_ value: Int) { unsigned(UInt64(bitPattern: Int64(value))) }

    /// Zigzag: small magnitudes of either sign take one byte. Differences are formed with wrapping arithmetic by the
    /// callers, so any pair of 64-bit values round-trips (the reader adds back with wrapping too).
    mutating func signed(_ value: Int64) {
        unsigned(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func data(_ value: [UInt8]) {
        unsigned(value.count)
        bytes.append(contentsOf: value)
    }

    mutating func string(_ value: String) { data(Array(value.utf8)) }
}

/// Reads what ``ByteWriter`` wrote, bounds-checked: malformed input throws, never traps.
struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func byte() throws(StoredBlobError) -> UInt8 {
        guard offset < bytes.count else { throw StoredBlobError("blob ends early at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func unsigned() throws(StoredBlobError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            guard shift < 64 else { throw StoredBlobError("varint longer than 64 bits at byte \(offset)") }
            value |= UInt64(next & 0x7F) << shift
            if next & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// An unsigned varint that must lie in `range` (counts and lengths: a damaged blob cannot make a reader allocate).
    mutating func count(in range: ClosedRange<Int>) throws(StoredBlobError) -> Int {
        let value = try unsigned()
        guard value <= UInt64(range.upperBound), Int(value) >= range.lowerBound else {
            throw StoredBlobError("count \(value) outside \(range)")
        }
        return Int(value)
    }

    mutating func signed() throws(StoredBlobError) -> Int64 {
        let raw = try unsigned()
        return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
    }

    mutating func data() throws(StoredBlobError) -> [UInt8] {
        let length = try count(in: 0...(bytes.count - offset))
        defer { offset += length }
        return Array(bytes[offset..<offset + length])
    }

    mutating func string() throws(StoredBlobError) -> String {
        String(decoding: try data(), as: UTF8.self)
    }
}
