import EcoWattProtocol
import EcoWattServer
import EcoWattStorage
import FirmwareImage
import Foundation
import HummingbirdTesting
import Synchronization
import Testing

/// Deployments are one-wave rollouts (issue 21): the deployments API keeps working through the rollout model, and
/// pacing per minute holds.
@Suite struct DeploymentRolloutTests {
    typealias Device = OTAHTTPTests.Device

    @Test func aDeploymentIsAOneWaveRolloutThatFollowsTheFleetAndGivesWayToNewerOnes() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install(vectors, keys: keys, into: test)
        try await test.run { client in
            try await test.bind("DEP-1", client: client)
            let all = try await OTAHTTPTests.deploy(vectors[0].version, to: nil, client: client, test: test)
            // The deployment is rollout `all`: one wave of kind deployment that follows the fleet.
            let rollout = try await RolloutHTTPTests.rollout(client, test, Int(all))
            let settings = rollout["settings"] as? [String: Any] ?? [:]
            #expect(rollout["wave_count"] as? Int == 1 && settings["kind"] as? String == "deployment", "\(rollout)")
            #expect(settings["follows_fleet"] as? Bool == true && settings["max_attempts"] as? Int == 5)
            #expect(try await RolloutHTTPTests.devices(client, test, Int(all)).map { $0["device_id"] as? String } == ["DEP-1"])

            // A device registered after the deployment is offered it, and joins the rollout when it starts.
            try await test.bind("DEP-LATE", client: client)
            var late = Device(id: "DEP-LATE", running: "1.0.0", keys: keys)
            try await RolloutHTTPTests.install(&late, client, keys: keys)
            #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(client, test, Int(all)), "DEP-LATE") == "installed")
            for _ in 0..<3 { try await test.bind("DEP-LATE", client: client) }  // healthy uploads on the new version
            #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(client, test, Int(all)), "DEP-LATE") == "healthy")
            await test.server.services.rollouts.evaluate()
            let shown = try await client.execute(uri: "/api/v1/deployments/\(all)", method: .get, headers: test.operatorHeaders)
            #expect(shown.json["status"] as? String == "active", "a deployment stays active until cancelled: \(shown.json)")
            #expect(shown.json["device_ids"] == nil, "every device")

            // A newer deployment to one device takes it from the older one, which still serves the rest of the fleet.
            let one = try await OTAHTTPTests.deploy(vectors[1].version, to: ["DEP-1"], client: client, test: test)
            #expect(try await RolloutHTTPTests.devices(client, test, Int(all)).map { $0["device_id"] as? String } == ["DEP-LATE"])
            var first = Device(id: "DEP-1", running: "1.0.0", keys: keys)
            #expect(try await first.checkForUpdate(client)?["latest_version"]?.stringValue == vectors[1].version)
            try await test.bind("DEP-NEW", client: client)
            var newcomer = Device(id: "DEP-NEW", running: "1.0.0", keys: keys)
            #expect(try await newcomer.checkForUpdate(client)?["latest_version"]?.stringValue == vectors[0].version)

            // A staged rollout takes a device from a deployment; a deployment does not take one from a staged rollout.
            let staged = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(vectors[0].version)","device_ids":["DEP-1"],"settings":{"waves":[100]}}"#,
                server: test
            )
            #expect(staged.status == .created, "\(String(buffer: staged.body))")
            let emptied = try await client.execute(uri: "/api/v1/deployments/\(one)", method: .get, headers: test.operatorHeaders)
            #expect(emptied.json["status"] as? String == "cancelled", "left without devices: replaced \(emptied.json)")
            let refused = try await client.operatorJSON(
                .post,
                "/api/v1/deployments",
                #"{"version":"\#(vectors[1].version)","device_ids":["DEP-1"]}"#,
                server: test
            )
            #expect(
                refused.status == .conflict && (refused.json["error"] as? [String: Any])?["code"] as? String == "devices_in_rollout",
                "\(String(buffer: refused.body))"
            )

            // The image of an open deployment is not deleted; a new deployment to every device replaces the old one.
            let delete = try await client.execute(uri: "/api/v1/firmwares/\(vectors[0].version)", method: .delete, headers: test.operatorHeaders)
            #expect(delete.status == .conflict)
            let replacing = try await OTAHTTPTests.deploy(vectors[1].version, to: nil, client: client, test: test)
            let old = try await client.execute(uri: "/api/v1/deployments/\(all)", method: .get, headers: test.operatorHeaders)
            #expect(old.json["status"] as? String == "cancelled")
            let listed = try await client.execute(uri: "/api/v1/deployments?status=active", method: .get, headers: test.operatorHeaders)
            #expect((listed.json["items"] as? [[String: Any]])?.compactMap { ($0["id"] as? Int).map(Int64.init) } == [replacing])
            #expect(try await newcomer.checkForUpdate(client)?["latest_version"]?.stringValue == vectors[1].version)
            let stats = try await client.execute(uri: "/api/v1/stats/ota", method: .get, headers: test.operatorHeaders)
            #expect(stats.json["active_deployments"] as? Int == 1 && stats.json["deployments"] as? Int == 3, "\(stats.json)")
        }
    }

    /// A device that boots already running the rollout's version (its report after installing was lost while the
    /// server was down, or it was flashed otherwise) is installed by that boot report, and healthy after its uploads;
    /// the open check alone moves nothing.
    @Test func aDeviceThatBootsRunningTheVersionIsInstalledWithoutADownload() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            try await test.bind("FLASHED", client: client)
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","device_ids":["FLASHED"],"settings":{"waves":[100]}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            var device = Device(id: "FLASHED", running: image.version, keys: keys)
            #expect(try await device.checkForUpdate(client) == nil)
            #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(client, test, id), "FLASHED") == "pending")
            _ = try await device.boot(client)
            #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(client, test, id), "FLASHED") == "installed")
            for _ in 0..<3 { try await test.bind("FLASHED", client: client) }
            await test.server.services.rollouts.evaluate()
            #expect(try await RolloutHTTPTests.rollout(client, test, id)["status"] as? String == "completed")
        }
    }

    @Test func deploymentsStoredBeforeRolloutsAreAdoptedAtStart() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let before = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install(vectors, keys: keys, into: before)
        // A row of the deployments table, as a server of before rollouts left it (the store writes only while the
        // server runs); the next start adopts it.
        let legacy = Mutex<OTADeployment?>(nil)
        try await before.run { _ in
            let row = try await before.server.services.devices.createDeployment(
                OTADeployment(version: vectors[0].version, deviceIDs: ["OLD-1"], maxAttempts: 2, notes: "from 0.x", createdAtMs: 1)
            )
            legacy.withLock { $0 = row }
        }
        let test = try await TestServer(directory: before.directory, firmwareKeys: keys)
        try await test.run { client in
            var adopted: [[String: Any]] = []
            for _ in 0..<50 where adopted.isEmpty {
                let listed = try await client.execute(uri: "/api/v1/deployments", method: .get, headers: test.operatorHeaders)
                adopted = listed.json["items"] as? [[String: Any]] ?? []
                if adopted.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(adopted.count == 1)
            #expect(adopted.first?["device_ids"] as? [String] == ["OLD-1"] && adopted.first?["max_attempts"] as? Int == 2)
            #expect(adopted.first?["notes"] as? String == "from 0.x" && adopted.first?["status"] as? String == "active")
            let old = try await test.server.services.devices.deployments(status: nil, before: nil, limit: 10)
            #expect(old.map(\.id) == [legacy.withLock { $0?.id }] && old.first?.status == "cancelled", "the old row is retired")
            var device = Device(id: "OLD-1", running: "1.0.0", keys: keys)
            #expect(try await device.checkForUpdate(client)?["latest_version"]?.stringValue == vectors[0].version)
        }
        withExtendedLifetime(before) {}  // it owns the data directory
    }

    @Test func pacingCountsTheDownloadsStartedInTheLastMinute() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            for id in ["MIN-1", "MIN-2"] { try await test.bind(id, client: client) }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","id_prefix":"MIN-","settings":{"waves":[100],"max_new_downloads_per_minute":1}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            // The first device downloads and installs within the minute: no download is in progress any more, yet
            // one started in the last minute.
            var first = Device(id: "MIN-1", running: "1.0.0", keys: keys)
            try await RolloutHTTPTests.install(&first, client, keys: keys)
            let held = try await RolloutHTTPTests.withheld(client, "MIN-2")
            #expect(held.contains("1 downloads started in the last minute (at most 1)"), "\(held)")
            // A device that heard "yes" at the same moment as the first (the check writes nothing) took the offer (its
            // first progress report, from its address) and is held at initiate.
            var second = Device(id: "MIN-2", running: "1.0.0", keys: keys)
            try await second.progress(client, "downloading", 0, "Starting firmware download...")
            #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(client, test, id), "MIN-2") == "offered")
            let initiate = try await second.initiate(client, version: image.version)
            #expect(initiate.status == .tooManyRequests, "\(String(buffer: initiate.body))")
            #expect(String(buffer: initiate.body).contains("downloads started in the last minute"))
            #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(client, test, id), "MIN-2") == "offered")
            test.clock.set(test.clock.now + 61_000)
            #expect(try await second.checkForUpdate(client) != nil, "a minute later the next may start")
            #expect(try await second.initiate(client, version: image.version).status == .ok)
        }
    }
}
