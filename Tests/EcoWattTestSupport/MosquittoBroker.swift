import Foundation
import MQTTBridge
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Loopback TCP ports for tests (servers, brokers).
public enum LoopbackPort {
    /// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (32768–60999 here).
    ///
    /// A port the kernel picked for a bind to port 0 and that was then released is soon handed out again, to another
    /// test's server binding port 0 or to an outgoing connection: a broker started on it afterwards failed to bind while
    /// something else answered there, and an MQTT test waited 20 s for a connection that could not happen. Ports from
    /// 20000–32767 are never chosen by the kernel; each is checked bindable and handed out once per process.
    public static func free() -> Int {
        while true {
            let port = Int.random(in: 20_000...32_767)
            guard issued.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(port) { return port }
        }
    }

    private static let issued = Mutex<Set<Int>>([])

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// True if something accepts TCP connections on 127.0.0.1:`port`.
    public static func isListening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

/// A real `mosquitto` broker on a free loopback port, for tests (stopped with SIGKILL).
public final class MosquittoBroker: Sendable {
    let daemon: LoopbackDaemon
    let directory: URL
    public var port: Int { daemon.port }

    /// The broker binary (`$MOSQUITTO`, else `/usr/sbin/mosquitto`).
    public static var binary: String {
        ProcessInfo.processInfo.environment["MOSQUITTO"] ?? "/usr/sbin/mosquitto"
    }

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    public init(port: Int = LoopbackPort.free()) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mosquitto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configuration = directory.appendingPathComponent("mosquitto.conf")
        try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
            .write(to: configuration, atomically: true, encoding: .utf8)
        daemon = LoopbackDaemon(binary: Self.binary, arguments: ["-c", configuration.path], port: port)
        try daemon.start()
    }

    deinit {
        daemon.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts the broker (again) and waits until it accepts connections.
    public func start() throws { try daemon.start() }

    /// Kills the broker (SIGKILL) and waits for it to exit.
    public func stop() { daemon.stop() }
}

/// A second libmosquitto client that subscribes and records every message.
public final class MQTTSubscriber: Sendable {
    let received = Mutex<[(topic: String, payload: [UInt8])]>([])
    let subscribed = Mutex(false)
    private let client: MosquittoClient

    public init(port: Int, topic: String) throws {
        var configuration = MosquittoClient.Configuration()
        configuration.port = port
        configuration.clientID = "ecowatt-test-sub-\(UUID().uuidString.prefix(8))"
        let box = SubscriberBox()
        client = try MosquittoClient(configuration: configuration) { event in
            switch event {
            case .connected: box.onConnect?()
            case .message(let topic, let payload): box.onMessage?(topic, payload)
            default: break
            }
        }
        let client = self.client
        box.onConnect = { [weak self] in
            try? client.subscribe(topic: topic, qos: 1)
            self?.subscribed.withLock { $0 = true }
        }
        box.onMessage = { [weak self] topic, payload in self?.received.withLock { $0.append((topic, payload)) } }
        client.start()
    }

    public var messages: [(topic: String, payload: [UInt8])] { received.withLock { $0 } }

    /// Waits until `count` messages arrived (or the timeout passed); returns what arrived.
    public func wait(for count: Int, timeout: Duration = .seconds(20)) async throws -> [(topic: String, payload: [UInt8])] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, messages.count < count { try await Task.sleep(for: .milliseconds(50)) }
        return messages
    }

    /// Waits until the subscription was sent after a connection.
    public func waitUntilSubscribed(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !subscribed.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(20)) }
        // The SUBACK follows the SUBSCRIBE within a round trip on loopback.
        try await Task.sleep(for: .milliseconds(200))
    }

    public func stop() { client.stop() }
}

/// Callbacks set after the client exists (the client is created with the event handler).
final class SubscriberBox: @unchecked Sendable {
    var onConnect: (@Sendable () -> Void)?
    var onMessage: (@Sendable (String, [UInt8]) -> Void)?
}
