import Foundation

/// A real HAProxy in HTTP mode on a free loopback port, forwarding to one backend, or to several in turn (round robin,
/// request by request: no sticky sessions), with `option forwardfor` (it appends the client's address as an
/// `X-Forwarded-For` line).
public final class HAProxy: Sendable {
    let daemon: LoopbackDaemon
    let directory: URL
    public var port: Int { daemon.port }

    /// The binary (`$HAPROXY`, else `/usr/sbin/haproxy`; `scripts/test.sh` installs the Debian package).
    public static var binary: String {
        ProcessInfo.processInfo.environment["HAPROXY"] ?? "/usr/sbin/haproxy"
    }

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    public convenience init(backendPort: Int, port: Int = LoopbackPort.free()) throws {
        try self.init(backendPorts: [backendPort], port: port)
    }

    public init(backendPorts: [Int], port: Int = LoopbackPort.free()) throws {
        // Health-checked every 300 ms; a request whose connection a dead instance refuses goes to another (redispatch).
        let servers = backendPorts.enumerated().map { "    server ecowatt\($0.offset) 127.0.0.1:\($0.element) check inter 300 fall 2 rise 2" }
            .joined(separator: "\n")
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
                option http-server-close
                option redispatch
                retries 3
            frontend devices
                bind 127.0.0.1:\(port)
                option forwardfor
                default_backend ecowatt
            backend ecowatt
                balance roundrobin
                option httpchk GET /ready
            \(servers)

            """
        let path = directory.appendingPathComponent("haproxy.cfg")
        try configuration.write(to: path, atomically: true, encoding: .utf8)
        daemon = LoopbackDaemon(binary: Self.binary, arguments: ["-db", "-f", path.path], port: port)
        try daemon.start()
    }

    deinit {
        daemon.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public func stop() { daemon.stop() }
}
