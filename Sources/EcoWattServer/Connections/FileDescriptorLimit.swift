#if canImport(Glibc)
import Glibc
#endif

/// The process's open-file limit: connections, the database, diagnostics files and the MQTT socket share it.
public enum FileDescriptorLimit {
    /// Descriptors kept back from connections for the database, files, the MQTT client and the log.
    public static let reserved = 128

    /// The soft limit now.
    public static var current: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }

    /// Raises the soft limit to the hard limit (a server's defaults are often 1024 of a hard 524288); returns both.
    @discardableResult
    public static func raise() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (current, current) }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let hard = Int(clamping: limit.rlim_max)
        return (current, hard)
    }
}
