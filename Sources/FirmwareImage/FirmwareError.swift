/// Why a key set or a firmware image cannot be used.
public enum FirmwareError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Key files are missing, unreadable or malformed.
    case keys(String)
    /// The firmware image itself is unusable (not an ESP image, empty, too large).
    case image(String)
    /// A version string that is not URL-safe.
    case invalidVersion(String)
    /// A prepared version already exists and overwriting was not requested.
    case versionExists(String)
    /// No prepared firmware of that version.
    case notFound(String)
    /// A manifest file that cannot be read back.
    case manifest(String)
    /// A file-system operation failed.
    case io(String)

    public var description: String {
        switch self {
        case .keys(let reason): "firmware keys: \(reason)"
        case .image(let reason): "firmware image: \(reason)"
        case .invalidVersion(let version):
            "version '\(version)' is not URL-safe (1-64 characters of A-Z a-z 0-9 . _ -, not starting with . or -)"
        case .versionExists(let version): "firmware version \(version) already exists"
        case .notFound(let version): "no prepared firmware of version \(version)"
        case .manifest(let reason): "firmware manifest: \(reason)"
        case .io(let reason): reason
        }
    }
}
