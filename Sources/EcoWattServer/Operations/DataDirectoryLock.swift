import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a data directory, held for the life of the server (issue 16).
///
/// Two servers on one directory would both write the SQLite file, both claim the same MQTT client id and kick each other
/// off the broker. The lock is an `flock` on `ecowatt.lock` in the directory, taken before anything else opens a file
/// there; the file holds the owner's pid so the refusal can name it. The kernel drops the lock when the process dies,
/// so a crashed server never leaves a stale lock behind.
public final class DataDirectoryLock: Sendable {
    public let path: String
    /// The locked file's descriptor; `nil` once released.
    private let descriptor: Mutex<Int32?>

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case inUse(directory: String, pid: Int32?)
        case cannotOpen(path: String, reason: String)

        public var description: String {
            switch self {
            case .inUse(let directory, let pid):
                "data directory \(directory) is in use by \(pid.map { "pid \($0)" } ?? "another process"): one server per data directory"
            case .cannotOpen(let path, let reason): "cannot open the lock file \(path): \(reason)"
            }
        }
    }

    /// Takes the lock or throws at once (never waits).
    public init(directory: String) throws(Failure) {
        path = (directory as NSString).appendingPathComponent("ecowatt.lock")
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = read(descriptor, &buffer, buffer.count)
            close(descriptor)
            guard busy else { throw .cannotOpen(path: path, reason: reason) }
            let text = String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
            throw .inUse(directory: directory, pid: Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = pid.withCString { pwrite(descriptor, $0, strlen($0), 0) }
        self.descriptor = Mutex(descriptor)
    }

    /// Releases the lock (a server that stopped; also on deinit). Idempotent.
    public func release() {
        guard
            let descriptor = descriptor.withLock({ state in
                defer { state = nil }
                return state
            })
        else { return }
        _ = ftruncate(descriptor, 0)
        close(descriptor)
    }

    deinit { release() }
}
