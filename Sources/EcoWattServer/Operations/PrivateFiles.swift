import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The server's files are private to its user (issue 16): the database holds per-device keys and bindings, the keys
/// directory the FOTA signing key and the operator token, diagnostics what devices logged.
public enum PrivateFiles {
    /// New files 0600 and directories 0700 from now on, in this process.
    public static func restrictNewFiles() {
        umask(0o077)
    }

    /// Tightens existing `directories` to 0700 and the regular files directly in them to 0600 (not below: the keys'
    /// firmware source tree is meant to be copied out). Returns the paths it changed; each is logged once.
    @discardableResult
    public static func tighten(_ directories: [String], logger: Logger) -> [String] {
        var changed: [String] = []
        let manager = FileManager.default
        for directory in directories {
            guard tighten(directory, to: 0o700) else { continue }
            changed.append(directory)
        }
        for directory in directories {
            for name in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] {
                let path = (directory as NSString).appendingPathComponent(name)
                var isDirectory: ObjCBool = false
                guard manager.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
                if tighten(path, to: 0o600) { changed.append(path) }
            }
        }
        if !changed.isEmpty {
            logger.notice(
                "file permissions tightened: the server's files are private to its user",
                metadata: ["count": "\(changed.count)", "paths": "\(changed.prefix(10).joined(separator: ", "))"]
            )
        }
        return changed
    }

    /// Sets `mode` when the current one grants more (group or other bits); true if it changed.
    private static func tighten(_ path: String, to mode: mode_t) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFLNK else { return false }
        let current = info.st_mode & 0o777
        guard current & 0o077 != 0 else { return false }
        return chmod(path, current & mode) == 0
    }
}
