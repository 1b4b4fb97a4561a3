/// Identifiers that are safe both in a URL and as part of a file name: 1…`maxLength` characters of
/// `A-Z a-z 0-9 . _ -`, not starting with `.` or `-` (so never `..`, a hidden file or an option).
public enum SafeIdentifier {
    public static func isValid(_ text: String, maxLength: Int = 64) -> Bool {
        let bytes = Array(text.utf8)
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
}
