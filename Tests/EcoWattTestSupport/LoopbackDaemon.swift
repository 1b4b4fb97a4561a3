import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A helper process that listens on a loopback port (a broker, a proxy): started as a ``ChildProcess``, waited for until
/// it accepts connections, stopped with SIGKILL.
public final class LoopbackDaemon: @unchecked Sendable {
    public let port: Int
    let binary: String
    let arguments: [String]
    private var process: ChildProcess?

    public init(binary: String, arguments: [String], port: Int) {
        self.binary = binary
        self.arguments = arguments
        self.port = port
    }

    deinit { stop() }

    /// Starts the process (again) and waits until it accepts connections on `port`.
    public func start() throws {
        let process = try ChildProcess(executable: binary, arguments: arguments)
        self.process = process
        for _ in 0..<100 {
            if LoopbackPort.isListening(port) { return }
            usleep(50_000)
        }
        stop()
        let name = (binary as NSString).lastPathComponent
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "\(name) did not start on \(port)"])
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    public func stop() {
        guard let process, process.isRunning else { return }
        process.signal(SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }
}
