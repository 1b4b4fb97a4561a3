import EcoWattServer
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import Testing

/// What the rollout tests share (here and in `RolloutSimulatorFaultsTests`): reading a rollout and its devices back,
/// waiting on its state, and one emulated device's whole update.
extension RolloutHTTPTests {
    static func rollout(_ client: some TestClientProtocol, _ test: TestServer, _ id: Int) async throws -> [String: Any] {
        try await client.execute(uri: "/api/v1/rollouts/\(id)", method: .get, headers: test.operatorHeaders).json
    }

    static func devices(_ client: some TestClientProtocol, _ test: TestServer, _ id: Int, query: String = "") async throws -> [[String: Any]] {
        let page = try await client.execute(uri: "/api/v1/rollouts/\(id)/devices?\(query)", method: .get, headers: test.operatorHeaders)
        return page.json["items"] as? [[String: Any]] ?? []
    }

    static func state(_ devices: [[String: Any]], _ id: String) -> String? {
        devices.first { $0["device_id"] as? String == id }?["state"] as? String
    }

    /// Polls the rollout until its status is no longer `status` (or `seconds` passed); returns it.
    static func waitWhile(
        _ status: String,
        _ client: some TestClientProtocol,
        _ test: TestServer,
        _ id: Int,
        seconds: Int = 90
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var rollout: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            rollout = try await Self.rollout(client, test, id)
            if rollout["status"] as? String != status { return rollout }
            try await Task.sleep(for: .milliseconds(300))
        }
        Issue.record("rollout \(id) still \(status) after \(seconds) s: \(rollout)\n\(try await explain(client, test, id))")
        return rollout
    }

    /// What a rollout's unfinished devices did last (a failure's message): their entries, whether health is awaited, their
    /// latest packets and OTA sessions, and the ingest counters.
    static func explain(_ client: some TestClientProtocol, _ test: TestServer, _ id: Int) async throws -> String {
        var lines: [String] = []
        for device in try await devices(client, test, id) where !["healthy", "failed"].contains(device["state"] as? String ?? "") {
            let deviceID = device["device_id"] as? String ?? ""
            lines.append("\(device) awaits health: \(test.server.services.rollouts.awaitsHealth(deviceID))")
            for path in ["packets?limit=4", "ota/sessions?limit=2"] {
                let page = try await client.execute(uri: "/api/v1/devices/\(deviceID)/\(path)", method: .get, headers: test.operatorHeaders)
                lines.append("  \(path): \(String(buffer: page.body))")
            }
        }
        let ingest = test.server.services.ingest.statistics
        lines.append("ingest: \(ingest.accepted) accepted, \(ingest.completed) packets decoded late, \(ingest.undecodable) undecodable")
        return lines.joined(separator: "\n")
    }

    /// The check's message when nothing is offered.
    static func withheld(_ client: some TestClientProtocol, _ device: String) async throws -> String {
        let response = try await client.execute(uri: "/ota/check/\(device)?version=1.0.0", method: .get)
        #expect(response.json["update_available"] as? Bool == false)
        return response.json["message"] as? String ?? ""
    }

    /// Offer → initiate → every chunk → verify → install → boot report with the new version.
    static func install(_ device: inout OTAHTTPTests.Device, _ client: some TestClientProtocol, keys: FirmwareKeys) async throws {
        let info = try #require(try await device.checkForUpdate(client), "\(device.id) was offered nothing")
        var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
        #expect(try await device.initiate(client, version: receiver.version).status == .ok)
        _ = try await device.fetch(client, &receiver)
        #expect(try await device.install(client, receiver)["outcome"] as? String == "success")
    }
}
