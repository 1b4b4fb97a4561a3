import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real HAProxy in HTTP mode on a free loopback port, forwarding to `backendPort` with `option forwardfor` (it
/// appends the client's address as an `X-Forwarded-For` line). Stopped with SIGKILL.
public final class HAProxy: @unchecked Sendable {
    public let port: Int
    let directory: URL
    private var process: Process?

    /// The binary (`$HAPROXY`, else `/usr/sbin/haproxy`; `scripts/test.sh` installs the Debian package).
    public static var binary: String {
        ProcessInfo.processInfo.environment["HAPROXY"] ?? "/usr/sbin/haproxy"
    }

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    public init(backendPort: Int, port: Int = LoopbackPort.free()) throws {
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("haproxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configuration = """
            global
                maxconn 256
            defaults
                mode http
                timeout connect 5s
                timeout client 30s
                timeout server 30s
            frontend devices
                bind 127.0.0.1:\(port)
                option forwardfor
                default_backend ecowatt
            backend ecowatt
                server ecowatt 127.0.0.1:\(backendPort)

            """
        let path = directory.appendingPathComponent("haproxy.cfg")
        try configuration.write(to: path, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["-db", "-f", path.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        for _ in 0..<100 {
            if LoopbackPort.isListening(port) { return }
            usleep(50_000)
        }
        stop()
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "haproxy did not start on \(port)"])
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }
}
