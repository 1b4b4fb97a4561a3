import AsyncHTTPClient
import EcoWattProtocol
import Foundation
import NIOCore
import NIOHTTP1

/// The HTTP side of one simulated device: the firmware's requests with its timeouts, recorded per route template.
struct DeviceConnection: Sendable {
    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
        /// The parsed body as the device sees it, for replies the firmware parses (those sent with a `pool`): `nil`
        /// when it is not JSON or does not fit the device's pool.
        var json: JSONValue?
    }

    let client: HTTPClient
    let baseURL: String
    let statistics: SimulationStatistics

    /// Sends one request; `nil` when no response arrived. A status outside `accepted`, or a reply that needs more than
    /// `pool` bytes of the device's ArduinoJson pool, is recorded as an error.
    func send(
        _ method: HTTPMethod,
        _ path: String,
        route: String,
        body: String? = nil,
        timeoutSeconds: Int64,
        accepted: Set<Int> = [200, 201],
        pool: Int? = nil
    ) async -> Reply? {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "User-Agent", value: "ESP32HTTPClient")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let started = ContinuousClock.now
        do {
            let response = try await client.execute(request, timeout: .seconds(timeoutSeconds))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            let elapsed = ContinuousClock.now - started
            let status = Int(response.status.code)
            let body = Array(bytes.readableBytesView)
            var reply = Reply(status: status, body: body, json: pool == nil ? nil : try? JSONParser.parse(body))
            var error: String?
            if !accepted.contains(status) {
                let text = String(decoding: reply.body.prefix(160), as: UTF8.self)
                error = "HTTP \(status) \(text)"
            } else if let pool, let json = reply.json, ArduinoJSONPool.bytes(for: json) > pool {
                // ArduinoJson fails with NoMemory: the device treats the reply as garbage.
                error = "reply needs \(ArduinoJSONPool.bytes(for: json)) of the device's \(pool) pool bytes (NoMemory)"
                reply.json = nil
            }
            statistics.request(route: route, status: status, latencyNs: Self.nanoseconds(elapsed), error: error)
            return reply
        } catch {
            // A run ended early (Ctrl-C) cancels requests in flight: not a server failure.
            if Task.isCancelled { return nil }
            let elapsed = ContinuousClock.now - started
            statistics.request(route: route, status: nil, latencyNs: Self.nanoseconds(elapsed), error: "\(error)")
            return nil
        }
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        UInt64(max(0, duration.components.seconds)) * 1_000_000_000 + UInt64(max(0, duration.components.attoseconds) / 1_000_000_000)
    }
}
