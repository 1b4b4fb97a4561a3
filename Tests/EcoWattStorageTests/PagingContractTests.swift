import EcoWattProtocol
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import Testing

/// The listing contract (issue 18): every list method pages by a cursor and filters the same on every backend.
@Suite struct PagingContractTests {
    typealias Backend = StoreContractTests.Backend

    /// Pages through `fetch` (given the previous page's last item) until a short page.
    static func pages<Item>(size: Int, _ fetch: (Item?) async throws -> [Item]) async throws -> [[Item]] {
        var pages: [[Item]] = []
        var last: Item?
        while true {
            let page = try await fetch(last)
            if !page.isEmpty { pages.append(page) }
            guard page.count == size, let next = page.last else { return pages }
            last = next
        }
    }

    @Test(arguments: Backend.cases) func devicesPageByIdAndEveryDevicePresentAtTheStartComesOnce(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let registry = stores.devices
            let ids = (0..<25).map { String(format: "DEV-%02d", $0 * 2) }
            for (index, id) in ids.enumerated() {
                _ = try await registry.register(deviceID: id, fields: DeviceFields(firmwareVersion: index % 3 == 0 ? "1.1.0" : "1.0.0"), nowMs: 1)
            }
            var seen: [String] = []
            var after: String?
            var added = 0
            repeat {
                let page = try await registry.devices(after: after, limit: 4, filter: DeviceFilter())
                seen += page.map(\.deviceID)
                after = page.count == 4 ? page.last?.deviceID : nil
                // Devices added while paging, before and after the cursor, do not disturb it.
                _ = try await registry.admit(deviceID: String(format: "DEV-%02d", added * 2 + 1), nowMs: 2)
                added += 1
            } while after != nil
            let original = Set(ids)
            #expect(seen.filter(original.contains) == ids, "every device present at the start, once, in id order")
            #expect(seen == seen.sorted() && Set(seen).count == seen.count)
            let newer = try await registry.devices(after: nil, limit: 100, filter: DeviceFilter(firmwareVersion: "1.1.0"))
            #expect(newer.map(\.deviceID) == ids.enumerated().filter { $0.offset % 3 == 0 }.map(\.element))
            let prefixed = try await registry.devices(after: "DEV-1", limit: 100, filter: DeviceFilter(idPrefix: "DEV-2"))
            let everything = try await registry.devices(after: nil, limit: 1000, filter: DeviceFilter())
            #expect(prefixed.map(\.deviceID) == everything.map(\.deviceID).filter { $0.hasPrefix("DEV-2") } && prefixed.count >= 5)
        }
    }

    @Test(arguments: Backend.cases) func anOperatorCreatesADeviceOnceAndItIsNeverPending(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let registry = stores.devices
            #expect(try await registry.createDevice("NEW-1", fields: DeviceFields(deviceName: "shed"), nowMs: 5))
            #expect(try await registry.createDevice("NEW-1", fields: DeviceFields(deviceName: "other"), nowMs: 6) == false)
            let row = try #require(try await registry.device("NEW-1"))
            #expect(row.admission == "operator" && row.deviceName == "shed" && row.firstSeenMs == 5)
            _ = try await registry.admit(deviceID: "SEEN", nowMs: 7)
            #expect(try await registry.createDevice("SEEN", fields: DeviceFields(), nowMs: 8) == false, "an existing row is not replaced")
        }
    }

    @Test(arguments: Backend.cases) func commandsPageNewestFirstAndFilterByStatus(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let commands = stores.devices
            let request = try BackendStores.command(#"{"command":{"action":"get_power_stats"}}"#)
            var queued: [CommandRow] = []
            for at: Int64 in 1...9 { queued.append(try await commands.queue(request, deviceID: "PG", nowMs: at, maxPending: 100).command) }
            _ = try await commands.queue(request, deviceID: "OTHER", nowMs: 10, maxPending: 100)
            for command in queued.prefix(3) { _ = try await commands.cancelCommand(command.commandID, nowMs: 20) }
            #expect(queued.map(\.sequence) == queued.map(\.sequence).sorted() && Set(queued.map(\.sequence)).count == 9)
            let pages = try await Self.pages(size: 4) { (last: CommandRow?) in
                try await commands.commands(deviceID: "PG", status: nil, before: last?.sequence, limit: 4)
            }
            #expect(pages.map(\.count) == [4, 4, 1] && pages.flatMap { $0 }.map(\.commandID) == queued.reversed().map(\.commandID))
            let cancelled = try await commands.commands(deviceID: "PG", status: .cancelled, before: nil, limit: 10)
            #expect(cancelled.map(\.commandID) == queued.prefix(3).reversed().map(\.commandID))
            #expect(
                try await commands.commands(deviceID: "PG", status: .pending, before: queued[5].sequence, limit: 10).map(\.commandID) == [
                    queued[4].commandID, queued[3].commandID,
                ]
            )
            let everyDevice = try await commands.commands(deviceID: nil, status: nil, before: nil, limit: 3)
            #expect(everyDevice.map(\.deviceID) == ["OTHER", "PG", "PG"], "without a device: every device's, newest first")
            #expect(
                try await commands.commands(deviceID: nil, status: .cancelled, before: queued[2].sequence, limit: 10).map(\.commandID) == [
                    queued[1].commandID, queued[0].commandID,
                ]
            )
        }
    }

    @Test(arguments: Backend.cases) func configurationEventsPageAndAWithdrawnChangeIsRecorded(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let config = stores.devices
            #expect(try await config.withdrawPending(deviceID: "CW", nowMs: 1) == false, "nothing pending")
            for step: Int64 in 1...5 {
                _ = try await config.addPending(deviceID: "CW", update: .object([("sampling_interval", .int(step))]), nowMs: step)
            }
            #expect(try await config.withdrawPending(deviceID: "CW", nowMs: 10))
            #expect(try await config.configState(deviceID: "CW").pending == nil)
            #expect(try await config.deliverPending(deviceID: "CW", nowMs: 11) == nil, "a withdrawn change is not delivered")
            let all = try await config.configHistory(deviceID: "CW", before: nil, limit: 100)
            #expect(all.first?.event == "withdrawn" && all.first?.config == .object([("sampling_interval", .int(5))]))
            let pages = try await Self.pages(size: 2) { (last: ConfigHistoryRow?) in
                try await config.configHistory(deviceID: "CW", before: last?.id, limit: 2)
            }
            #expect(pages.flatMap { $0 } == all && all.count == 6 && pages.count == 3)
        }
    }

    @Test(arguments: Backend.cases) func reportsPageNewestFirst(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let reports = stores.devices
            for at: Int64 in 1...5 { try await reports.addPowerReport(PowerReport(deviceID: "RP", receivedAtMs: at * 100)) }
            let energy = try await Self.pages(size: 2) { (last: PowerReport?) in
                try await reports.powerReports(deviceID: "RP", sinceMs: 200, before: last?.id, limit: 2)
            }
            #expect(energy.flatMap { $0 }.map(\.receivedAtMs) == [500, 400, 300, 200])
            for index in 0..<5 {
                let event = FaultEvent(
                    deviceID: "RP",
                    deviceTimeS: nil,
                    receivedAtMs: Int64(index),
                    faultType: "crc",
                    recoveryAction: nil,
                    success: index % 2 == 0,
                    details: nil,
                    retryCount: nil
                )
                _ = try await reports.addFaultEvent(event)
            }
            let first = try await reports.faultEvents(deviceID: "RP", before: nil, limit: 3)
            let second = try await reports.faultEvents(deviceID: "RP", before: first.events.last?.id, limit: 3)
            #expect((first.events + second.events).map(\.receivedAtMs) == [4, 3, 2, 1, 0])
            #expect(second.total == 5 && second.successful == 3, "counts are over all events, not the page")
        }
    }

    @Test(arguments: Backend.cases) func sessionsAndDeploymentsPageAndFilter(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let ota = stores.devices
            for index in 0..<6 {
                let session = OTASession(
                    sessionID: "s\(index)",
                    deviceID: "OP",
                    version: "1.0.\(index)",
                    deploymentID: nil,
                    fromVersion: nil,
                    totalChunks: 1,
                    startedAtMs: Int64(index / 2) * 1_000
                )
                _ = try await ota.startSession(session)
                if index < 4 {
                    _ = try await ota.endSession(
                        "s\(index)",
                        outcome: index % 2 == 0 ? .failed : .success,
                        message: nil,
                        reportedVersion: nil,
                        reportedStatus: nil,
                        nowMs: 9_000
                    )
                }
            }
            let pages = try await Self.pages(size: 2) { (last: OTASession?) in
                try await ota.sessions(
                    deviceID: "OP",
                    outcome: nil,
                    before: last.map(OTASessionCursor.init),
                    limit: 2
                )
            }
            #expect(
                pages.flatMap { $0 }.map(\.sessionID) == ["s5", "s4", "s3", "s2", "s1", "s0"],
                "by start, then the order they started, newest first"
            )
            #expect(try await ota.sessions(deviceID: "OP", outcome: "failed", before: nil, limit: 10).map(\.sessionID) == ["s2", "s0"])
            // s4 was replaced by s5 (same device): only s5 is active.
            #expect(try await ota.sessions(deviceID: "OP", outcome: "active", before: nil, limit: 10).map(\.sessionID) == ["s5"])
            var created: [OTADeployment] = []
            for index in 0..<5 {
                created.append(
                    try await ota.createDeployment(
                        OTADeployment(version: "2.0.\(index)", deviceIDs: nil, maxAttempts: 1, notes: nil, createdAtMs: Int64(index))
                    )
                )
            }
            _ = try await ota.cancelDeployment(id: created[1].id, nowMs: 50)
            let deployments = try await Self.pages(size: 2) { (last: OTADeployment?) in
                try await ota.deployments(status: "active", before: last?.id, limit: 2)
            }
            #expect(deployments.flatMap { $0 }.map(\.version) == ["2.0.4", "2.0.3", "2.0.2", "2.0.0"])
            #expect(try await ota.deployments(status: "cancelled", before: nil, limit: 10).map(\.id) == [created[1].id])
        }
    }

    @Test(arguments: Backend.cases) func packetsPageNewestFirst(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            for nonce: UInt32 in 1...7 { try await stores.telemetry.submit(IngestRecord.example("PK", nonce: nonce)).value() }
            let pages = try await Self.pages(size: 3) { (last: PacketRow?) in
                try await stores.telemetry.packets(deviceID: "PK", before: last?.id, limit: 3)
            }
            #expect(pages.flatMap { $0 }.map(\.nonce) == [7, 6, 5, 4, 3, 2, 1] && pages.count == 3)
        }
    }
}
