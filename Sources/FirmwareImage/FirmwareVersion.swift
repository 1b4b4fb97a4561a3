/// Firmware version strings. The device puts the version unescaped into chunk URLs (spec §7.1), and the server puts it
/// into file names, so only URL- and path-safe versions are accepted.
public enum FirmwareVersion {
    /// Longest accepted version.
    public static let maxLength = 64

    /// True for 1-64 characters of `A-Z a-z 0-9 . _ -` that do not start with `.` or `-`.
    public static func isValid(_ version: String) -> Bool {
        let bytes = Array(version.utf8)
        guard (1...maxLength).contains(bytes.count), bytes[0] != UInt8(ascii: "."), bytes[0] != UInt8(ascii: "-") else {
            return false
        }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }

    /// Throws ``FirmwareError/invalidVersion(_:)`` unless ``isValid(_:)``.
    public static func validate(_ version: String) throws(FirmwareError) {
        guard isValid(version) else { throw .invalidVersion(version) }
    }
}
