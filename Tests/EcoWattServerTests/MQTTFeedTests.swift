import EcoWattProtocol
import EcoWattServer
import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@Suite(.enabled(if: MosquittoBroker.isInstalled, "needs the mosquitto broker (apt install mosquitto)"))
struct MQTTFeedTests {
    static func waitUntil(
        timeout: Duration = .seconds(20),
        _ condition: () async throws -> Bool,
        state: () async throws -> String = { "" }
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !(try await condition()) {
            if ContinuousClock.now >= deadline {
                let described = try await state()
                try #require(ContinuousClock.now < deadline, "timed out: \(described)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func status(_ client: some TestClientProtocol, _ test: TestServer) async throws -> [String: Any] {
        try await client.execute(uri: "/api/v1/mqtt", method: .get, headers: test.operatorHeaders).json
    }

    @Test func acceptedUploadsArePublishedWithTheFeedPayload() async throws {
        let broker = try MosquittoBroker()
        let subscriber = try MQTTSubscriber(port: broker.port, topic: "ecowatt/data/#")
        try await subscriber.waitUntilSubscribed()
        let test = try await TestServer(mqttPort: broker.port)
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            try await Self.waitUntil {
                try await Self.status(client, test)["connected"] as? Bool == true
            } state: {
                "\(try await Self.status(client, test))"
            }
            #expect(try await client.postJSON("/aggregated/MQ-1", Uploads.body(device: "MQ-1", nonce: 1)).status == .ok)
            #expect(try await client.postJSON("/aggregated/MQ-2", Uploads.body(device: "MQ-2", nonce: 1)).status == .ok)
            // A rejected upload publishes nothing.
            #expect(try await client.postJSON("/aggregated/MQ-1", Uploads.body(device: "MQ-1", nonce: 1)).status == .unauthorized)
            let messages = try await subscriber.wait(for: 2)
            try await Task.sleep(for: .milliseconds(300))
            #expect(subscriber.messages.count == 2)
            #expect(Set(messages.map(\.topic)) == ["ecowatt/data/MQ-1", "ecowatt/data/MQ-2"])
            let message = try #require(messages.first { $0.topic == "ecowatt/data/MQ-1" })
            let payload = try JSONParser.parse(message.payload)
            #expect(payload["device_id"]?.stringValue == "MQ-1")
            #expect(payload["sample_count"]?.intValue == 3)
            guard case .array(let values) = payload["values"], case .array(let samples) = payload["samples"] else {
                Issue.record("values and samples must be arrays: \(payload.serialized)")
                return
            }
            #expect(values.count == 18)
            #expect(samples.count == 3)
            #expect(payload["compression_stats"]?["method"]?.stringValue == "bitpack")
            #expect(payload["compression_stats"]?["original_size"]?.intValue == 36)
            #expect(payload["compression_stats"]?["compressed_size"]?.intValue == 30)
            #expect(payload["register_layout"] == .array(["Vac1", "Iac1", "Ipv1", "Ipv2", "Temp", "Pac"]))
            #expect(payload["approximate"] == .bool(false))
            #expect(payload["received_at"]?.stringValue == "2025-11-28T03:20:15.200Z")
            // Scaled by the register gains, and equal to what the query API reports for the newest sample.
            let latest = try await client.execute(uri: "/api/v1/devices/MQ-1/telemetry/latest", method: .get, headers: test.operatorHeaders)
            let sample = try #require(latest.json["sample"] as? [String: Any])
            let registers = try #require(sample["registers"] as? [String: Double])
            let last = try #require(samples.last?["registers"])
            for (name, value) in registers { #expect(last[name]?.doubleValue == value, "\(name)") }
            #expect(samples.last?["timestamp_ms"]?.intValue == (sample["timestamp_ms"] as? Int).map(Int64.init))

            try await Self.waitUntil { try await Self.status(client, test)["backlog"] as? Int == 0 }
            let status = try await Self.status(client, test)
            #expect(status["published"] as? Int == 2 && status["dropped"] as? Int == 0)
        }
        subscriber.stop()
    }

    /// Broker down: 200 uploads are accepted and kept; broker back: all 200 arrive, in order per device.
    @Test func aBrokerOutageLosesNothing() async throws {
        let broker = try MosquittoBroker()
        let test = try await TestServer(mqttPort: broker.port)
        let base = Uploads.exampleArrivalMs
        try await test.run { client in
            try await Self.waitUntil {
                try await Self.status(client, test)["connected"] as? Bool == true
            } state: {
                "\(try await Self.status(client, test))"
            }
            broker.stop()
            try await Self.waitUntil { try await Self.status(client, test)["connected"] as? Bool == false }
            for index in 0..<200 {
                let device = "OUT-\(index % 2)"
                test.clock.set(base + Int64(index))  // received_at orders the messages
                let response = try await client.postJSON("/aggregated/\(device)", Uploads.body(device: device, nonce: UInt32(index + 1)))
                #expect(response.status == .ok)
            }
            #expect(try await Self.status(client, test)["backlog"] as? Int == 200)
            // /ready reports the outage but stays ready: uploads are kept in the outbox.
            let down = try await client.execute(uri: "/ready", method: .get)
            #expect(down.status == .ok)
            #expect(((down.json["checks"] as? [String: Any])?["mqtt"] as? String)?.hasPrefix("disconnected") == true)
            #expect(try await Self.status(client, test)["last_error"] is String)
            try broker.start()
            let subscriber = try MQTTSubscriber(port: broker.port, topic: "ecowatt/data/#")
            try await subscriber.waitUntilSubscribed()
            // The publisher reconnects on its own (backoff) and drains the outbox.
            try await Self.waitUntil(timeout: .seconds(40)) { try await Self.status(client, test)["backlog"] as? Int == 0 }
            // Connected again: the last error is cleared and /ready says so.
            #expect(try await Self.status(client, test)["last_error"] == nil, "absent once connected")
            let up = try await client.execute(uri: "/ready", method: .get)
            #expect((up.json["checks"] as? [String: Any])?["mqtt"] as? String == "connected")
            let messages = try await subscriber.wait(for: 200)
            var seen: [String: [String]] = [:]
            for message in messages {
                let payload = try JSONParser.parse(message.payload)
                let device = try #require(payload["device_id"]?.stringValue)
                let time = try #require(payload["received_at"]?.stringValue)
                if !(seen[device]?.contains(time) ?? false) { seen[device, default: []].append(time) }  // at least once
            }
            #expect(seen["OUT-0"]?.count == 100 && seen["OUT-1"]?.count == 100, "none lost")
            for (device, times) in seen { #expect(times == times.sorted(), "\(device) in order") }
            subscriber.stop()
        }
    }

    @Test func aFullOutboxKeepsAcceptingUploadsAndCountsWhatItDrops() async throws {
        // No broker on this port: everything stays in the outbox, which holds 2 messages.
        let test = try await TestServer(mqttPort: LoopbackPort.free(), mqttOutboxLimit: 2)
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            for nonce in 1...3 {
                #expect(try await client.postJSON("/aggregated/FULL-1", Uploads.body(device: "FULL-1", nonce: UInt32(nonce))).status == .ok)
            }
            let status = try await Self.status(client, test)
            #expect(status["connected"] as? Bool == false)
            #expect(status["backlog"] as? Int == 2)
            #expect(status["dropped"] as? Int == 1)
            let samples = try await client.execute(
                uri: "/api/v1/devices/FULL-1/telemetry?start=1970-01-01T00:00:00Z&end=2033-05-18T03:33:20Z&resolution=raw",
                method: .get,
                headers: test.operatorHeaders
            )
            #expect((samples.json["samples"] as? [Any])?.count == 9, "every upload was stored")
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: test.operatorHeaders)
            #expect(String(buffer: metrics.body).contains("ecowatt_mqtt_backlog 2"))
        }
    }
}
