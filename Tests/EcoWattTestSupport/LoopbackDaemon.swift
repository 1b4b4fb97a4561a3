import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A helper process that listens on a loopback port (a broker, a proxy): started with `Foundation.Process` (which makes
/// it ignore SIGTERM), waited for until it accepts connections, stopped with SIGKILL.
public final class LoopbackDaemon: @unchecked Sendable {
    public let port: Int
    let binary: String
    let arguments: [String]
    private var process: Process?

    public init(binary: String, arguments: [String], port: Int) {
        self.binary = binary
        self.arguments = arguments
        self.port = port
    }

    deinit { stop() }

    /// Starts the process (again) and waits until it accepts connections on `port`.
    public func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
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
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }
}
