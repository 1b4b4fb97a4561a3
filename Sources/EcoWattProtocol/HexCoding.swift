/// Hexadecimal helpers shared by the protocol, storage and CLI.
public enum HexCoding {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A byte as the firmware docs write markers: `0x01`, `0xD0`.
    public static func byteLabel(_ byte: UInt8) -> String {
        let upper = Array("0123456789ABCDEF".utf8)
        return String(decoding: [UInt8(ascii: "0"), UInt8(ascii: "x"), upper[Int(byte >> 4)], upper[Int(byte & 0x0F)]], as: UTF8.self)
    }

    /// Decodes hex text. With `lowercaseOnly`, upper-case digits are rejected (the device always sends lower case).
    public static func decode(_ text: some StringProtocol, lowercaseOnly: Bool = false) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index], lowercaseOnly), let low = nibble(utf8[index + 1], lowercaseOnly) else {
                return nil
            }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8, _ lowercaseOnly: Bool) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F") where !lowercaseOnly: c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
