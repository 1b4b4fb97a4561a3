import EcoWattProtocol
import EcoWattStorage
import Foundation
import Testing

/// The contract of ``ConfigStore``, ``ReportStore`` and ``OTAStore``, against every backend.
@Suite struct RecordsContractTests {
    typealias Backend = StoreContractTests.Backend

    static func object(_ members: (String, JSONValue)...) -> JSONValue { .object(members) }

    // MARK: - ConfigStore

    @Test(arguments: Backend.cases) func pendingConfigurationIsMergedDeliveredAndAppliedOnAcknowledgement(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let config = stores.devices
            #expect(
                try await config.configState(deviceID: "CF")
                    == ConfigState(running: .object([]), pending: nil, pendingCreatedAtMs: nil, pendingDeliveredAtMs: nil)
            )
            #expect(try await config.deliverPending(deviceID: "CF", nowMs: 1) == nil)
            try await config.recordRunning(
                deviceID: "CF",
                report: Self.object(("sampling_interval", .int(5)), ("upload_interval", .int(15))),
                nowMs: 10
            )
            _ = try await config.addPending(deviceID: "CF", update: Self.object(("sampling_interval", .int(10))), nowMs: 20)
            let state = try await config.addPending(deviceID: "CF", update: Self.object(("upload_interval", .int(30))), nowMs: 30)
            #expect(state.pending == Self.object(("sampling_interval", .int(10)), ("upload_interval", .int(30))) && state.pendingCreatedAtMs == 30)
            #expect(try await config.acknowledge(deviceID: "CF", ack: .object([]), nowMs: 35) == false, "not delivered yet")
            #expect(try await config.deliverPending(deviceID: "CF", nowMs: 40) == state.pending)
            #expect(try await config.deliverPending(deviceID: "CF", nowMs: 45) == state.pending, "redelivered until acknowledged")
            #expect(try await config.configState(deviceID: "CF").pendingDeliveredAtMs == 40)
            #expect(try await config.acknowledge(deviceID: "CF", ack: Self.object(("ok", .bool(true))), nowMs: 50))
            let applied = try await config.configState(deviceID: "CF")
            #expect(applied.running == Self.object(("sampling_interval", .int(10)), ("upload_interval", .int(30))) && applied.pending == nil)
            #expect(try await config.acknowledge(deviceID: "CF", ack: .object([]), nowMs: 55) == false, "nothing pending")
            let history = try await config.configHistory(deviceID: "CF", limit: 10)
            #expect(history.map(\.event) == ["applied", "delivered", "requested", "requested", "boot_report"], "newest first")
            #expect(history.first?.detail == #"{"ok":true}"# && history.last?.createdAtMs == 10)
            #expect(try await config.configHistory(deviceID: "CF", limit: 2).count == 2)
            #expect(try await config.device("CF")?.admission == "operator", "an operator's request adopts the device")
        }
    }

    @Test(arguments: Backend.cases) func aPendingConfigurationThatChangesNothingIsClearedWhenDelivered(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let config = stores.devices
            try await config.recordRunning(deviceID: "NOOP", report: Self.object(("sampling_interval", .int(5))), nowMs: 10)
            _ = try await config.addPending(deviceID: "NOOP", update: Self.object(("sampling_interval", .int(5))), nowMs: 20)
            #expect(try await config.deliverPending(deviceID: "NOOP", nowMs: 30) == Self.object(("sampling_interval", .int(5))))
            #expect(try await config.configState(deviceID: "NOOP").pending == nil)
            #expect(try await config.configHistory(deviceID: "NOOP", limit: 1).first?.event == "cleared_noop")
        }
    }

    @Test(arguments: Backend.cases) func configurationHistoryIsBoundedPerDevice(_ backend: Backend) async throws {
        var retention = RetentionPolicy()
        retention.configHistory = RowCap(perDevice: 3, total: 100)
        try await BackendStores.with(backend, retention: retention) { stores in
            let config = stores.devices
            for step in 1...5 {
                _ = try await config.addPending(deviceID: "CAP", update: Self.object(("sampling_interval", .int(Int64(step)))), nowMs: Int64(step))
            }
            #expect(try await config.configHistory(deviceID: "CAP", limit: 10).map(\.createdAtMs) == [5, 4, 3])
            #expect(try await config.retentionCounts().dropped["config_history"] == 2)
        }
    }

    // MARK: - ReportStore

    @Test(arguments: Backend.cases) func aTableAtItsTotalDropsItsOldestRowsAndKeepsItsCountExact(_ backend: Backend) async throws {
        var retention = RetentionPolicy()
        retention.powerReports = RowCap(perDevice: 3, total: 5)
        try await BackendStores.with(backend, retention: retention) { stores in
            let reports = stores.devices
            var at: Int64 = 0
            for _ in 0..<4 {
                for device in ["T0", "T1", "T2"] {
                    at += 100
                    try await reports.addPowerReport(PowerReport(deviceID: device, receivedAtMs: at))
                }
            }
            var kept: [Int64] = []
            for device in ["T0", "T1", "T2"] {
                kept += try await reports.powerReports(deviceID: device, sinceMs: 0, limit: 10).map(\.receivedAtMs)
            }
            let counts = try await reports.retentionCounts()
            #expect(kept.count <= 5 && !kept.isEmpty, "\(kept)")
            #expect(kept.sorted() == Array((1...12).map { Int64($0) * 100 }.suffix(kept.count)), "the newest rows stay: \(kept.sorted())")
            #expect(counts.rows["power_reports"] == kept.count, "the kept count matches the rows: \(counts.rows)")
            #expect(counts.dropped["power_reports"] == 12 - kept.count)
        }
    }

    @Test(arguments: Backend.cases) func reportsComeBackNewestFirstWithinTheirCaps(_ backend: Backend) async throws {
        var retention = RetentionPolicy()
        retention.powerReports = RowCap(perDevice: 2, total: 100)
        try await BackendStores.with(backend, retention: retention) { stores in
            let reports = stores.devices
            for at: Int64 in [100, 200, 300] {
                var report = PowerReport(deviceID: "PW", receivedAtMs: at)
                report.avgCurrentMA = Double(at) / 10
                report.uptimeMs = at * 2
                try await reports.addPowerReport(report)
            }
            let kept = try await reports.powerReports(deviceID: "PW", sinceMs: 0, limit: 10)
            #expect(kept.map(\.receivedAtMs) == [300, 200] && kept.first?.avgCurrentMA == 30 && kept.first?.uptimeMs == 600)
            #expect(try await reports.powerReports(deviceID: "PW", sinceMs: 250, limit: 10).map(\.receivedAtMs) == [300])
            var ids: [Int64] = []
            for (index, success) in [true, false, true].enumerated() {
                let event = FaultEvent(
                    deviceID: "FT",
                    deviceTimeS: 1_700_000_000,
                    receivedAtMs: Int64(index),
                    faultType: "modbus_timeout",
                    recoveryAction: "retry",
                    success: success,
                    details: "try \(index)",
                    retryCount: index
                )
                ids.append(try await reports.addFaultEvent(event))
            }
            #expect(ids == ids.sorted() && Set(ids).count == 3)
            let (events, total, successful) = try await reports.faultEvents(deviceID: "FT", limit: 2)
            #expect(events.map(\.id) == [ids[2], ids[1]] && total == 3 && successful == 2)
            #expect(events.first?.details == "try 2" && events.first?.retryCount == 2 && events.first?.deviceTimeS == 1_700_000_000)
        }
    }

    // MARK: - OTAStore

    /// Deployments of before they were one-wave rollouts: kept for the server to adopt at start.
    @Test(arguments: Backend.cases) func deploymentsOfBeforeRolloutsAreListedUntilCancelled(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let ota = stores.devices
            let all = try await ota.createDeployment(OTADeployment(version: "1.1.0", deviceIDs: nil, maxAttempts: 3, notes: "fleet", createdAtMs: 10))
            let some = try await ota.createDeployment(
                OTADeployment(version: "1.2.0", deviceIDs: ["T2", "T1", "T1"], maxAttempts: 2, notes: nil, createdAtMs: 20)
            )
            #expect(some.id > all.id && some.status == "active")
            #expect(try await ota.deployments(limit: 10).map(\.deviceIDs) == [["T1", "T2"], nil])
            #expect(try await ota.device("T1")?.admission == "operator", "a deployment's targets are the operator's")
            let cancelled = try #require(try await ota.cancelDeployment(id: some.id, nowMs: 30))
            #expect(cancelled.status == "cancelled" && cancelled.cancelledAtMs == 30)
            #expect(try await ota.cancelDeployment(id: some.id, nowMs: 40)?.cancelledAtMs == 30, "cancelling twice changes nothing")
            #expect(try await ota.cancelDeployment(id: 999_999, nowMs: 40) == nil)
            #expect(try await ota.deployments(status: "active", before: nil, limit: 10).map(\.id) == [all.id])
        }
    }

    @Test(arguments: Backend.cases) func aNewSessionReplacesTheActiveOneAndTakesOverTheProgressBeforeIt(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let ota = stores.devices
            let first = OTASession(
                sessionID: "s1",
                deviceID: "O1",
                version: "1.1.0",
                deploymentID: nil,
                fromVersion: "1.0.0",
                totalChunks: 10,
                startedAtMs: 1_000
            )
            #expect(try await ota.startSession(first).isEmpty)
            // Progress sent just before an initiate belongs to the session that follows.
            try await ota.recordProgress(
                OTAEvent(sessionID: nil, deviceID: "O1", phase: "download", progress: 0, message: "Starting", deviceTimeS: nil, receivedAtMs: 2_000),
                outcome: nil
            )
            let second = OTASession(
                sessionID: "s2",
                deviceID: "O1",
                version: "1.1.0",
                deploymentID: nil,
                fromVersion: "1.0.0",
                totalChunks: 10,
                startedAtMs: 3_000
            )
            #expect(try await ota.startSession(second) == ["s1"])
            let replaced = try #require(try await ota.session("s1"))
            #expect(replaced.outcome == .replaced && replaced.endedAtMs == 3_000 && replaced.message == "replaced by a new initiate")
            #expect(try await ota.events(sessionID: "s2", limit: 10).map(\.message) == ["Starting"])
            #expect(try await ota.activeSessions().map(\.sessionID) == ["s2"])
            #expect(try await ota.sessions(deviceID: "O1", limit: 10).map(\.sessionID) == ["s2", "s1"], "newest first")
            #expect(try await ota.device("O1")?.admission == "pending", "an anonymous initiate makes a pending device")
        }
    }

    @Test(arguments: Backend.cases) func progressAndOutcomesEndSessionsAndCountAttempts(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let ota = stores.devices
            for (index, id) in ["a", "b", "c"].enumerated() {
                let session = OTASession(
                    sessionID: id,
                    deviceID: "O2",
                    version: "2.0.0",
                    deploymentID: 7,
                    fromVersion: nil,
                    totalChunks: 4,
                    startedAtMs: Int64(index) * 1_000
                )
                _ = try await ota.startSession(session)
                if id == "a" || id == "b" {
                    try await ota.recordProgress(
                        OTAEvent(
                            sessionID: id,
                            deviceID: "O2",
                            phase: "verify",
                            progress: 100,
                            message: "bad hash",
                            deviceTimeS: nil,
                            receivedAtMs: Int64(index) * 1_000 + 500
                        ),
                        outcome: .failed
                    )
                }
            }
            let failed = try #require(try await ota.session("a"))
            #expect(
                failed.outcome == .failed && failed.phase == "verify" && failed.progress == 100 && failed.endedAtMs == 500
                    && failed.message == "bad hash"
            )
            #expect(try await ota.attempts(deviceID: "O2", version: "2.0.0", sinceMs: 0) == (2, false))
            #expect(try await ota.attempts(deviceID: "O2", version: "2.0.0", sinceMs: 900) == (1, false))
            // Counters add up (several instances serve one session's chunks).
            try await ota.saveCounters(["c": OTAChunkCounters(chunksServed: 2, bytesServed: 2_048, lastChunk: 1, updatedAtMs: 8_000)])
            try await ota.saveCounters(["c": OTAChunkCounters(chunksServed: 1, bytesServed: 1_024, lastChunk: 2, updatedAtMs: 9_000)])
            #expect(
                try await ota.endSession(
                    "c",
                    outcome: .versionMismatch,
                    message: "runs 1.0.0",
                    reportedVersion: "1.0.0",
                    reportedStatus: "success",
                    nowMs: 9_500
                )
            )
            #expect(try await ota.endSession("c", outcome: .success, message: nil, reportedVersion: nil, reportedStatus: nil, nowMs: 9_600) == false)
            let ended = try #require(try await ota.session("c"))
            #expect(ended.outcome == .versionMismatch && ended.chunksServed == 3 && ended.bytesServed == 3_072 && ended.lastChunk == 2)
            #expect(ended.reportedVersion == "1.0.0" && ended.reportedStatus == "success" && ended.endedAtMs == 9_500)
            #expect(try await ota.attempts(deviceID: "O2", version: "2.0.0", sinceMs: 0) == (2, true))
            let counts = try await ota.otaCounts()
            #expect(counts.sessionsByOutcome == ["failed": 2, "version_mismatch": 1] && counts.activeSessions == 0)
            #expect(counts.chunksServed == 3 && counts.bytesServed == 3_072)
        }
    }

    @Test(arguments: Backend.cases) func idleSessionsExpireAndTheFirmwareVersionOfKnownDevicesIsKept(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let ota = stores.devices
            _ = try await ota.startSession(
                OTASession(
                    sessionID: "idle",
                    deviceID: "O3",
                    version: "3.0.0",
                    deploymentID: nil,
                    fromVersion: nil,
                    totalChunks: 2,
                    startedAtMs: 1_000
                )
            )
            _ = try await ota.startSession(
                OTASession(
                    sessionID: "busy",
                    deviceID: "O4",
                    version: "3.0.0",
                    deploymentID: nil,
                    fromVersion: nil,
                    totalChunks: 2,
                    startedAtMs: 1_000
                )
            )
            try await ota.saveCounters(["busy": OTAChunkCounters(chunksServed: 1, bytesServed: 1_024, lastChunk: 0, updatedAtMs: 50_000)])
            let expired = try await ota.expireSessions(idleBeforeMs: 10_000, nowMs: 60_000)
            #expect(expired.map(\.sessionID) == ["idle"] && expired.map(\.deviceID) == ["O3"])
            #expect(try await ota.session("idle")?.outcome == .expired)
            #expect(try await ota.session("busy")?.outcome == nil)
            #expect(try await ota.expireSessions(idleBeforeMs: 10_000, nowMs: 61_000).isEmpty)
            try await ota.setFirmwareVersion(deviceID: "O3", version: "3.0.0")
            try await ota.setFirmwareVersion(deviceID: "NEVER-SEEN", version: "3.0.0")
            #expect(try await ota.device("O3")?.firmwareVersion == "3.0.0")
            #expect(try await ota.device("NEVER-SEEN") == nil)
        }
    }

    /// Ended sessions beyond the device's cap go with their events; events are bounded per session.
    @Test(arguments: Backend.cases) func endedSessionsAndEventsAreBounded(_ backend: Backend) async throws {
        var retention = RetentionPolicy()
        retention.otaSessions = RowCap(perDevice: 2, total: 100)
        retention.otaEvents = RowCap(perDevice: 3, total: 100)
        try await BackendStores.with(backend, retention: retention) { stores in
            let ota = stores.devices
            _ = try await ota.register(deviceID: "O5", fields: DeviceFields(), nowMs: 0)
            _ = try await ota.updateDevice("O5", fields: DeviceFields())  // adopted: not pending, full caps
            for index in 0..<4 {
                let id = "e\(index)"
                _ = try await ota.startSession(
                    OTASession(
                        sessionID: id,
                        deviceID: "O5",
                        version: "4.0.0",
                        deploymentID: nil,
                        fromVersion: nil,
                        totalChunks: 2,
                        startedAtMs: Int64(index) * 1_000
                    )
                )
                for step in 0..<5 {
                    try await ota.recordProgress(
                        OTAEvent(
                            sessionID: id,
                            deviceID: "O5",
                            phase: "download",
                            progress: step * 20,
                            message: nil,
                            deviceTimeS: nil,
                            receivedAtMs: Int64(index) * 1_000 + Int64(step)
                        ),
                        outcome: step == 4 ? .failed : nil
                    )
                }
            }
            #expect(try await ota.events(sessionID: "e3", limit: 10).map(\.progress) == [40, 60, 80], "the session's newest three")
            // e3 is ended after the last start: the starts kept e1, e2 (ended) besides the active one.
            #expect(try await ota.sessions(deviceID: "O5", limit: 10).map(\.sessionID) == ["e3", "e2", "e1"])
            #expect(try await ota.events(sessionID: "e0", limit: 10).isEmpty, "a dropped session's events go with it")
            #expect(try await ota.retentionCounts().dropped["ota_sessions"] == 1)
        }
    }
}
