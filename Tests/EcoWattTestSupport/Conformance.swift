import Foundation

/// Locates `../shared/conformance` (or `$ECOWATT_CONFORMANCE_DIR`) and reads its JSONL files; shared by the test
/// targets.
public enum Conformance {
    /// The package's root directory (Tests/EcoWattTestSupport/Conformance.swift → the package root).
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public static var directory: URL {
        if let override = ProcessInfo.processInfo.environment["ECOWATT_CONFORMANCE_DIR"] {
            return URL(fileURLWithPath: override)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/conformance")
    }

    public static func lines(_ name: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    public static func bytes(hex: String) -> [UInt8] {
        var out = [UInt8]()
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }
}

extension Conformance {
    /// `fota_vectors.json`: test keys, two prepared images and their tampered variants.
    public static func fotaVectors() throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent("fota_vectors.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}
