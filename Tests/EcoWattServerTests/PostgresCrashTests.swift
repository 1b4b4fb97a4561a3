import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Synchronization
import Testing

/// Issue 22, process level: two real `ecowatt serve` processes on one real PostgreSQL feeding one real mosquitto, behind
/// a real HAProxy. One is SIGKILLed under upload load through the balancer; the other keeps serving, and every upload
/// that got a 200 is stored and reaches MQTT (the survivor takes over draining the outbox).
@Suite(
    .enabled(
        if: PostgresServer.enabled && MosquittoBroker.isInstalled && HAProxy.isInstalled,
        "needs PostgreSQL, mosquitto and haproxy"
    )
)
struct PostgresCrashTests {
    /// The database's advisory locks with their sessions' state, one line each.
    static let advisoryLocks = """
        SELECT concat_ws(' ', 'pid=' || l.pid, 'key=' || ((l.classid::bigint << 32) | l.objid::bigint), 'granted=' || l.granted,
          'state=' || a.state, 'wait=' || a.wait_event, 'since=' || a.state_change, 'client=' || a.client_addr || ':' || a.client_port,
          'query=' || left(a.query, 60))
        FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """

    @Test func aKilledInstanceLosesNoAcknowledgedUploadAndTheOtherKeepsServing() async throws {
        try await PostgresTestDatabase.withURL { url in
            let broker = try MosquittoBroker()
            defer { broker.stop() }
            let subscriber = try MQTTSubscriber(port: broker.port, topic: "ecowatt/data/#")
            defer { subscriber.stop() }
            try await subscriber.waitUntilSubscribed()
            let roots = [ProcessTests.temporaryRoot(), ProcessTests.temporaryRoot()]
            defer { for root in roots { try? FileManager.default.removeItem(at: root) } }
            func start(_ index: Int) async throws -> ServerProcess {
                try await ServerProcess(
                    root: roots[index],
                    port: LoopbackPort.free(),
                    environment: [
                        "ECOWATT_DATABASE_URL": url, "ECOWATT_MQTT_PORT": "\(broker.port)",
                        "ECOWATT_MQTT_CLIENT_ID": "pg-crash-\(index)-\(broker.port)",
                    ]
                )
            }
            // The first instance publishes an upload before the second starts: it drains the outbox, the one killed.
            let first = try await start(0)
            #expect(try await first.post("/aggregated/PGKILL-WARM", Uploads.body(device: "PGKILL-WARM", nonce: 11001)) == 200)
            _ = try await subscriber.wait(for: 1)
            #expect(first.log.contains("this instance drains the MQTT outbox"), "\(first.log)")
            let second = try await start(1)
            let balancer = try HAProxy(backendPorts: [first.port, second.port])
            defer { balancer.stop() }
            let acknowledged = Acknowledged()
            let devices = (0..<6).map { "PGKILL-\($0)" }
            // Each device sends its uploads through the balancer, which alternates between the instances; an upload
            // that fails (answered by neither, or cut off with the killed instance) is sent again with the same nonce,
            // as the firmware retries. A 401 then means the first attempt was stored (a replay): not acknowledged.
            let senders = Task {
                await withTaskGroup(of: Void.self) { group in
                    for device in devices {
                        group.addTask {
                            for nonce in UInt32(11001)..<(11001 + 120) where !Task.isCancelled {
                                let body = Uploads.body(device: device, nonce: nonce)
                                for _ in 0..<5 {
                                    let status = try? await LoopbackHTTP.request(
                                        port: balancer.port,
                                        method: "POST",
                                        path: "/aggregated/\(device)",
                                        body: body,
                                        headers: ["Content-Type": "application/json"]
                                    ).status
                                    if status == 200 { acknowledged.add(device, nonce) }
                                    if status == 200 || status == 401 { break }
                                }
                            }
                        }
                    }
                }
            }
            while acknowledged.total < 150 { try await Task.sleep(for: .milliseconds(20)) }
            try await first.stop(signal: SIGKILL)
            await senders.value
            let acked = acknowledged.snapshot
            #expect(acknowledged.total > 400, "the survivor kept serving: \(acknowledged.total) uploads acknowledged")

            // Stored: every acknowledged nonce, read through the survivor's operator API.
            let token = try ProcessTests.operatorToken(roots[1])
            for device in devices {
                let page = try await LoopbackHTTP.request(
                    port: second.port,
                    path: "/api/v1/devices/\(device)/packets?limit=1000",
                    headers: ["Authorization": "Bearer \(token)"]
                )
                let items = (try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any])?["items"] as? [[String: Any]] ?? []
                let stored = Set(items.compactMap { ($0["nonce"] as? NSNumber)?.uint32Value })
                let missing = Set(acked[device] ?? []).subtracting(stored)
                #expect(missing.isEmpty, "\(device): acknowledged but not stored: \(missing.sorted())")
            }
            // Published: each acknowledged upload's packet (one per nonce, told apart by its sample time), at least once.
            let expected = acked.values.reduce(0) { $0 + $1.count }
            let deadline = ContinuousClock.now + .seconds(60)
            var distinct: [String: Set<String>] = [:]
            while ContinuousClock.now < deadline {
                distinct = [:]
                for message in subscriber.messages {
                    guard let json = try? JSONParser.parse(message.payload), let device = json["device_id"]?.stringValue,
                        let time = json["timestamp"]?.stringValue
                    else { continue }
                    distinct[device, default: []].insert(time)
                }
                if devices.allSatisfy({ (distinct[$0]?.count ?? 0) >= (acked[$0]?.count ?? 0) }) { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            for device in devices {
                #expect((distinct[device]?.count ?? 0) >= (acked[device]?.count ?? 0), "\(device): published \(distinct[device]?.count ?? 0)")
            }
            // When it did not: who holds the drain lock, and in what state (a CI run once saw no takeover at all).
            var locks = ""
            if !second.log.contains("this instance drains the MQTT outbox") {
                locks = (try? await PostgresTestDatabase.texts(Self.advisoryLocks, on: url))?.joined(separator: "\n") ?? "(not read)"
            }
            #expect(second.log.contains("this instance drains the MQTT outbox"), "the survivor took the outbox over; advisory locks:\n\(locks)")
            print("PostgresCrashTests: \(expected) uploads acknowledged, \(subscriber.messages.count) MQTT messages")
            #expect(try await second.stop(signal: SIGTERM) == 0)
        }
    }
}
