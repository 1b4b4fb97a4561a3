import EcoWattTestSupport
import Foundation
import Synchronization
import Testing

@testable import MQTTBridge

#if canImport(Glibc)
import Glibc
#endif

@Suite(.enabled(if: MosquittoBroker.isInstalled, "needs the mosquitto broker (apt install mosquitto)"))
struct MosquittoClientTests {
    /// Publishes with QoS 1 to a real broker: every message id is acknowledged and a subscriber receives the payloads
    /// in order; after the broker is killed and restarted the client reconnects by itself.
    @Test func publishesWithAcknowledgementsAndReconnects() async throws {
        let broker = try MosquittoBroker()
        let subscriber = try MQTTSubscriber(port: broker.port, topic: "test/#")
        try await subscriber.waitUntilSubscribed()
        let events = Mutex<(connected: Int, acked: Set<Int32>)>((0, []))
        var configuration = MosquittoClient.Configuration()
        configuration.port = broker.port
        configuration.clientID = "publisher-\(UUID().uuidString.prefix(8))"
        let client = try MosquittoClient(configuration: configuration) { event in
            events.withLock { state in
                switch event {
                case .connected: state.connected += 1
                case .published(let id): state.acked.insert(id)
                default: break
                }
            }
        }
        client.start()
        try await Self.waitUntil { events.withLock { $0.connected } == 1 }
        var ids: [Int32] = []
        for index in 0..<50 { ids.append(try client.publish(topic: "test/a", payload: Array("m\(index)".utf8), qos: 1)) }
        try await Self.waitUntil { events.withLock { $0.acked.isSuperset(of: ids) } }
        let received = try await subscriber.wait(for: 50)
        #expect(received.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<50).map { "m\($0)" })

        broker.stop()
        try await Task.sleep(for: .milliseconds(300))
        try broker.start()
        try await Self.waitUntil(timeout: .seconds(15)) { events.withLock { $0.connected } == 2 }
        client.stop()
        subscriber.stop()
    }

    /// A broker that is not there yet is not an error: the client connects once it appears.
    @Test func connectsToABrokerThatStartsLater() async throws {
        let port = LoopbackPort.free()
        let connected = Mutex(false)
        var configuration = MosquittoClient.Configuration()
        configuration.port = port
        // The client backs off exponentially up to the maximum: keep it short, so that the test measures "connects
        // once the broker appears", not the backoff (with the default 30 s it could outlast 15 s).
        configuration.reconnectMaxSeconds = 2
        let failures = Mutex(0)
        let client = try MosquittoClient(configuration: configuration) { event in
            if case .connected = event { connected.withLock { $0 = true } }
            switch event {
            case .connectFailed, .disconnected: failures.withLock { $0 += 1 }
            default: break
            }
        }
        client.start()
        try await Task.sleep(for: .milliseconds(300))
        #expect(!connected.withLock { $0 })
        let broker = try MosquittoBroker(port: port)
        // The client's own backoff finds it (no help from outside).
        try await Self.waitUntil(timeout: .seconds(15)) { connected.withLock { $0 } }
        #expect(failures.withLock { $0 } >= 1, "the attempts before the broker existed failed")
        client.stop()
        _ = broker
    }

    /// A server with a thousand device connections gives the MQTT socket a descriptor above 1023, where libmosquitto's
    /// own select() loop fails without a callback; this client's poll() loop connects and publishes there.
    @Test func connectsAndPublishesWithADescriptorAbove1023() async throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_max >= 1200, "needs a descriptor limit of at least 1200 (hard limit \(limit.rlim_max))")
        if limit.rlim_cur < 1200 {
            limit.rlim_cur = min(limit.rlim_max, 4096)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let broker = try MosquittoBroker()
        // Fill every descriptor below 1100, so the client's socket (and its wake pipe) come after.
        var filler: [Int32] = []
        defer { for fd in filler { close(fd) } }
        while true {
            let fd = open("/dev/null", O_RDONLY)
            guard fd >= 0 else { break }
            filler.append(fd)
            if fd >= 1100 { break }
        }
        let connected = Mutex(false)
        let acknowledged = Mutex<Set<Int32>>([])
        var configuration = MosquittoClient.Configuration()
        configuration.port = broker.port
        configuration.clientID = "high-fd-\(UUID().uuidString.prefix(8))"
        let client = try MosquittoClient(configuration: configuration) { event in
            switch event {
            case .connected: connected.withLock { $0 = true }
            case .published(let id): _ = acknowledged.withLock { $0.insert(id) }
            default: break
            }
        }
        client.start()
        try await Self.waitUntil { connected.withLock { $0 } }
        let id = try client.publish(topic: "test/high", payload: Array("x".utf8), qos: 1)
        try await Self.waitUntil { acknowledged.withLock { $0.contains(id) } }
        client.stop()
    }

    static func waitUntil(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            try #require(ContinuousClock.now < deadline, "timed out")
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
