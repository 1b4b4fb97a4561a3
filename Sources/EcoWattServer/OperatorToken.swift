import Crypto
import EcoWattProtocol
import Foundation

/// The operator API bearer token, kept in `keys/operator_token` (mode 0600).
public enum OperatorToken {
    /// Reads the token, or generates a random 256-bit one on first start. Returns it and whether it was created.
    public static func loadOrCreate(path: String) throws -> (token: String, created: Bool) {
        if let data = FileManager.default.contents(atPath: path) {
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count >= 16 else {
                throw ConfigurationError.invalid("\(path) holds no usable token (at least 16 characters)")
            }
            return (token, false)
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        }
        let token = SymmetricKey(size: .bits256).withUnsafeBytes { HexCoding.encode(Array($0)) }
        guard
            FileManager.default.createFile(
                atPath: path,
                contents: Data((token + "\n").utf8),
                attributes: [.posixPermissions: 0o600]
            )
        else {
            throw ConfigurationError.invalid("cannot write operator token to \(path)")
        }
        return (token, true)
    }
}
