import EcoWattProtocol

/// Firmware version strings. The device puts the version unescaped into chunk URLs (spec §7.1), and the server puts it
/// into file names, so only URL- and path-safe versions are accepted.
public enum FirmwareVersion {
    /// Longest accepted version.
    public static let maxLength = 64

    /// True for 1-64 characters of `A-Z a-z 0-9 . _ -` that do not start with `.` or `-`.
    public static func isValid(_ version: String) -> Bool {
        SafeIdentifier.isValid(version, maxLength: maxLength)
    }

    /// Throws ``FirmwareError/invalidVersion(_:)`` unless ``isValid(_:)``.
    public static func validate(_ version: String) throws(FirmwareError) {
        guard isValid(version) else { throw .invalidVersion(version) }
    }
}
