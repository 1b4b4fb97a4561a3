import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import Foundation
import OpenAPIRuntime

// The API's types (generated from openapi.json) built from the stores' records, in one place.

typealias Schemas = Components.Schemas

func date(_ milliseconds: Int64) -> Date { MillisecondDates.date(milliseconds) }
func date(_ milliseconds: Int64?) -> Date? { milliseconds.map(MillisecondDates.date) }

extension Schemas.JSONObject {
    /// A stored JSON object (anything else becomes `{}`).
    init(_ value: JSONValue) {
        guard value.isObject, let decoded = try? JSONDecoder().decode(Self.self, from: Data(value.serializedBytes)) else {
            self.init()
            return
        }
        self = decoded
    }

    init?(_ value: JSONValue?) {
        guard let value else { return nil }
        self.init(value)
    }

    /// The object as the server's JSON value (for validation and storage), keys sorted: the generated container is a
    /// dictionary, whose order would change from run to run.
    var json: JSONValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self), let value = try? JSONParser.parse([UInt8](data)) else { return .object([]) }
        return value
    }
}

extension Schemas.Counts {
    init(_ counts: [String: Int]) {
        self.init(additionalProperties: counts.mapValues(Int64.init))
    }
}

extension Schemas.Device {
    init(_ listing: DeviceService.Listing) {
        let row = listing.row
        self.init(
            deviceId: row.deviceID,
            deviceName: row.deviceName,
            location: row.location,
            description: row.description,
            firmwareVersion: row.firmwareVersion,
            status: Schemas.DeviceStatus(rawValue: listing.status.rawValue)!,
            admission: Schemas.Device.AdmissionPayload(rawValue: row.admission) ?? .pending,
            registeredAt: date(row.registeredAtMs),
            firstSeen: date(row.firstSeenMs),
            lastSeen: date(listing.lastSeenMs),
            uploadCount: Int64(row.uploadCount),
            boundAddress: row.boundAddress,
            boundAt: date(row.boundAtMs),
            nonceJumpsRefused: Int64(row.nonceJumpsRefused),
            lastRefusedNonce: row.lastRefusedNonce,
            refusedUploads: row.refusedUploads > 0 ? Int64(row.refusedUploads) : nil
        )
    }
}

extension Schemas.Sample {
    init(_ sample: SampleRow) {
        let registers = zip(sample.registerLayout, sample.rawValues).compactMap { id, raw in
            Register(rawValue: id).map { ($0.name, $0.scaled(raw)) }
        }
        self.init(
            timestamp: date(sample.timestampMs),
            timestampMs: sample.timestampMs,
            registers: Schemas.Numbers(additionalProperties: Dictionary(registers) { first, _ in first }),
            rawValues: sample.rawValues.map(Int.init),
            registerLayout: sample.registerLayout,
            compressionMethod: sample.method,
            compressionRatio: sample.ratio.isFinite ? sample.ratio : 0,
            approximate: sample.approximate,
            timeEstimated: sample.timeEstimated
        )
    }
}

extension Schemas.Rollup {
    init(_ rollup: TelemetryRollup) {
        func scaled(_ pick: (RegisterStatistics) -> Double) -> Schemas.Numbers {
            let values = rollup.registers.compactMap { entry in Register(rawValue: entry.register).map { ($0.name, $0.scaled(pick(entry))) } }
            return Schemas.Numbers(additionalProperties: Dictionary(values) { first, _ in first })
        }
        self.init(
            timestamp: date(rollup.bucketMs),
            timestampMs: rollup.bucketMs,
            sampleCount: rollup.sampleCount,
            registers: scaled(\.mean),
            minimum: scaled { Double($0.minimum) },
            maximum: scaled { Double($0.maximum) }
        )
    }
}

extension Schemas.Packet {
    init(_ row: PacketRow) {
        self.init(
            id: row.id,
            nonce: Int64(row.nonce),
            packetIndex: row.packetIndex,
            marker: row.marker.map(HexCoding.byteLabel),
            method: row.method,
            registerLayout: row.registerLayout,
            sampleCount: row.sampleCount,
            lastSampleTime: date(row.lastSampleMs),
            decoded: row.decoded,
            approximate: row.approximate,
            truncated: row.truncated,
            partial: row.decoded && row.truncated,
            timeEstimated: row.timeEstimated,
            reason: row.reason,
            detail: row.detail,
            rawHex: row.blob.map(HexCoding.encode)
        )
    }
}

extension Schemas.Command {
    init(_ command: CommandRow) {
        self.init(
            commandId: command.commandID,
            deviceId: command.deviceID,
            action: command.action,
            targetRegister: command.targetRegister,
            registerAddress: command.registerAddress,
            value: command.value,
            status: Schemas.CommandStatus(rawValue: command.status.rawValue)!,
            createdAt: date(command.createdAtMs),
            expiresAt: date(command.expiresAtMs),
            dispatchedAt: date(command.dispatchedAtMs),
            finishedAt: date(command.finishedAtMs),
            resultStatus: command.resultStatus,
            executedAt: command.executedAt,
            result: Schemas.JSONObject(JSONValue(storedText: command.resultJSON)),
            errorMessage: command.errorMessage,
            idempotencyKey: command.idempotencyKey
        )
    }
}

extension Schemas.ConfigEvent {
    init(_ row: ConfigHistoryRow) {
        self.init(
            id: row.id,
            event: Schemas.ConfigEvent.EventPayload(rawValue: row.event) ?? .requested,
            config: Schemas.JSONObject(row.config),
            detail: row.detail,
            at: date(row.createdAtMs)
        )
    }
}

extension Schemas.EnergyReport {
    init(_ report: PowerReport) {
        self.init(
            id: report.id,
            receivedAt: date(report.receivedAtMs),
            // Above 1e12 ms the device's clock was synced; below, it counts milliseconds since boot.
            deviceTime: report.deviceTimeMs.flatMap { $0 > 1_000_000_000_000 ? MillisecondDates.date($0) : nil },
            deviceTimeInvalid: report.deviceTimeInvalid,
            enabled: report.enabled,
            techniques: report.techniques,
            techniquesList: report.techniques.map { $0 & 0x08 != 0 ? ["peripheral_gating"] : [] } ?? [],
            avgCurrentMa: report.avgCurrentMA,
            energySavedMah: report.energySavedMAh,
            peripheralSavingsMah: report.peripheralSavingsMAh,
            uptimeMs: report.uptimeMs,
            highPerfMs: report.highPerfMs,
            normalMs: report.normalMs,
            lowPowerMs: report.lowPowerMs,
            sleepMs: report.sleepMs
        )
    }
}

extension Schemas.FaultReport {
    init(_ event: FaultEvent) {
        self.init(
            id: event.id,
            receivedAt: date(event.receivedAtMs),
            deviceTime: event.deviceTimeS.map { date($0.multipliedReportingOverflow(by: 1000).partialValue) },
            deviceTimeInvalid: event.deviceTimeInvalid,
            faultType: event.faultType,
            recoveryAction: event.recoveryAction,
            success: event.success,
            details: event.details,
            retryCount: event.retryCount
        )
    }
}

extension Schemas.OTASession {
    init(_ session: EcoWattStorage.OTASession) {
        self.init(
            sessionId: session.sessionID,
            deviceId: session.deviceID,
            version: session.version,
            fromVersion: session.fromVersion,
            deploymentId: session.deploymentID,
            phase: session.phase,
            progress: session.progress,
            totalChunks: session.totalChunks,
            chunksServed: session.chunksServed,
            bytesServed: session.bytesServed,
            lastChunk: session.lastChunk,
            startedAt: date(session.startedAtMs),
            updatedAt: date(session.updatedAtMs),
            endedAt: date(session.endedAtMs),
            outcome: session.outcome.flatMap { Schemas.OTAOutcome(rawValue: $0.rawValue) },
            message: session.message,
            reportedVersion: session.reportedVersion,
            reportedStatus: session.reportedStatus,
            active: session.outcome == nil
        )
    }
}

extension Schemas.OTAEvent {
    init(_ event: EcoWattStorage.OTAEvent) {
        self.init(
            phase: event.phase,
            progress: event.progress,
            message: event.message,
            deviceTimestamp: event.deviceTimeS,
            deviceTimeInvalid: event.deviceTimeInvalid,
            receivedAt: date(event.receivedAtMs)
        )
    }
}

extension Schemas.Deployment {
    init(_ deployment: OTADeployment) {
        self.init(
            id: deployment.id,
            version: deployment.version,
            deviceIds: deployment.deviceIDs,
            status: Schemas.DeploymentStatus(rawValue: deployment.status) ?? .cancelled,
            maxAttempts: deployment.maxAttempts,
            notes: deployment.notes,
            createdAt: date(deployment.createdAtMs),
            cancelledAt: date(deployment.cancelledAtMs)
        )
    }
}

extension Schemas.FleetSummary {
    /// The fleet counts now, from memory (`GET /api/v1/fleet/summary` and the dashboard's event stream).
    static func now(devices: DeviceService, ota: OTAService, ingest: IngestService, problems: DeviceEventLog, nowMs: Int64) -> Self {
        let counts = devices.summary(updating: ota.activeSessionCount)
        let uploads = ingest.statistics
        // Known devices only: anyone can make uploads fail under made-up ids.
        let withProblems = devices.activity.knownCount(of: problems.problemCounts(sinceMs: nowMs - DeviceEventLog.dayMs).keys)
        return .init(
            devices: Int64(counts.devices),
            online: Int64(counts.online),
            offline: Int64(counts.devices - counts.online),
            updating: Int64(counts.updating),
            uploadsAccepted: Int64(uploads.accepted),
            uploadsRejected: Int64(uploads.validations - uploads.accepted),
            withProblems: Int64(withProblems)
        )
    }
}
