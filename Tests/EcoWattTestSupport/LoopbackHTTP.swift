import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Plain TCP and HTTP/1.1 on loopback with a chosen client address (127.0.0.2 and so on), for tests that need a
/// second client address or raw connections (idle, slow headers) that an HTTP client library would not make.
/// Blocking socket calls run on threads of their own (``blockingCall(_:)``).
public enum LoopbackHTTP {
    /// Opens a TCP connection from `localAddress` to 127.0.0.1:`port`; `nil` when it cannot (refused, out of
    /// descriptors). The caller closes the descriptor.
    public static func connect(port: Int, from localAddress: String = "127.0.0.1", timeoutSeconds: Int = 2) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(localAddress)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        remote.sin_port = UInt16(port).bigEndian
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        let connected =
            bound == 0
            && withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, size) } } == 0
        guard connected else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Writes `text` to a connected descriptor; `false` when the peer closed it.
    @discardableResult
    public static func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Reads until the peer closes the connection or the receive timeout passes.
    public static func readAll(_ fd: Int32) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            data += buffer[0..<count]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// True when the server closed the connection: what it sent (a 503, say) is read and followed by end of file, or
    /// the connection was reset. Does not wait.
    public static func isClosedByPeer(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 { continue }
            return count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
        }
    }

    /// One request on a fresh connection from `localAddress` (`Connection: close`, as the firmware's command poll).
    /// Returns the status code and the body; throws on a timeout or a refused connection.
    public static func request(
        port: Int,
        from localAddress: String = "127.0.0.1",
        method: String = "GET",
        path: String,
        body: String? = nil,
        headers: [String: String] = [:],
        timeoutSeconds: Int = 5
    ) async throws -> (status: Int, body: String) {
        try await blockingCall {
            guard let fd = connect(port: port, from: localAddress, timeoutSeconds: timeoutSeconds) else { throw Failure.connect(errno) }
            defer { close(fd) }
            var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
            for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
            if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
            send(fd, head + "\r\n" + (body ?? ""))
            let response = readAll(fd)
            guard let statusLine = response.split(separator: "\r\n").first, statusLine.hasPrefix("HTTP/1.1 "),
                let status = Int(statusLine.dropFirst(9).prefix(3))
            else { throw Failure.noResponse(response) }
            return (status, response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
        }
    }

    public enum Failure: Error {
        case connect(Int32)
        case noResponse(String)
    }
}
