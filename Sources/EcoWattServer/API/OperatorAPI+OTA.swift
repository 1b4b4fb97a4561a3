import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Foundation
import OpenAPIRuntime

// OTA sessions, firmware images and deployments.
extension OperatorAPI {
    func getDeviceOTA(_ input: Operations.GetDeviceOTA.Input) async throws -> Operations.GetDeviceOTA.Output {
        let id = input.path.deviceId
        guard let session = try await ota.sessions(deviceID: id, outcome: nil, before: nil, limit: 1).first else {
            return .ok(.init(body: .json(.init(deviceId: id, active: false, events: []))))
        }
        let events = try await ota.events(sessionID: session.sessionID, limit: 1000)
        let body = Schemas.DeviceOTA(
            deviceId: id,
            active: session.outcome == nil,
            session: .init(session),
            events: events.map(Schemas.OTAEvent.init)
        )
        return .ok(.init(body: .json(body)))
    }

    func listDeviceOTASessions(_ input: Operations.ListDeviceOTASessions.Input) async throws -> Operations.ListDeviceOTASessions.Output {
        let limit = try Self.limit(input.query.limit, default: 50, maximum: 1000)
        var before: OTASessionCursor?
        if let fields = try PageCursor.decode(input.query.cursor, count: 2) {
            guard let started = Int64(fields[0]), let sequence = Int64(fields[1]) else { throw PageCursor.invalid }
            before = OTASessionCursor(startedAtMs: started, sequence: sequence)
        }
        let sessions = try await ota.sessions(deviceID: input.path.deviceId, outcome: input.query.outcome?.rawValue, before: before, limit: limit)
        let next = sessions.count == limit ? sessions.last.map { PageCursor.encode([String($0.startedAtMs), String($0.sequence)]) } : nil
        return .ok(.init(body: .json(.init(items: sessions.map(Schemas.OTASession.init), nextCursor: next))))
    }

    func cancelDeviceOTA(_ input: Operations.CancelDeviceOTA.Input) async throws -> Operations.CancelDeviceOTA.Output {
        .ok(.init(body: .json(.init(try await ota.cancel(deviceID: input.path.deviceId)))))
    }

    /// In version order (as the firmware directory lists them); the cursor is the last version of the page.
    func listFirmwares(_ input: Operations.ListFirmwares.Input) async throws -> Operations.ListFirmwares.Output {
        let limit = try Self.limit(input.query.limit, default: 100, maximum: 1000)
        let after = try PageCursor.decode(input.query.cursor, count: 1)?.first
        var versions = try await ota.catalog.versions()
        if let after, let index = versions.firstIndex(of: after) { versions = Array(versions[(index + 1)...]) }
        let page = Array(versions.prefix(limit))
        // Open rollouts and deployments (deployments are one-wave rollouts) hold their version.
        let active = try await rollouts.openRollouts()
        var items: [Schemas.Firmware] = []
        for version in page {
            let deployments = active.filter { $0.version == version }.map(\.id)
            do {
                guard let firmware = try await ota.catalog.firmware(version) else {
                    items.append(.init(version: version, activeDeployments: deployments, error: "not found"))
                    continue
                }
                items.append(
                    .init(
                        version: version,
                        manifest: .init(firmware.manifest.json),
                        signatureVerified: firmware.signatureVerified,
                        activeDeployments: deployments
                    )
                )
            } catch {
                items.append(.init(version: version, activeDeployments: deployments, error: "\(error)"))
            }
        }
        let next = versions.count > limit ? page.last.map { PageCursor.encode([$0]) } : nil
        return .ok(.init(body: .json(.init(items: items, nextCursor: next))))
    }

    func uploadFirmware(_ input: Operations.UploadFirmware.Input) async throws -> Operations.UploadFirmware.Output {
        guard case .binary(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/octet-stream expected") }
        var image: [UInt8] = []
        for try await chunk in body {
            guard image.count + chunk.count <= maxFirmwareBytes else {
                throw APIError(.contentTooLarge, "The image exceeds max_firmware_bytes (\(maxFirmwareBytes))")
            }
            image.append(contentsOf: chunk)
        }
        guard !image.isEmpty else { throw APIError(.unprocessableContent, "The image is empty", code: "invalid") }
        let servable = try await ota.upload(image: image, version: input.query.version, description: input.query.description)
        var warnings: [String] = []
        if servable.manifest.encryptedSize > FirmwareManifest.defaultPartitionBytes {
            warnings.append(
                "encrypted_size exceeds the default OTA partition (\(FirmwareManifest.defaultPartitionBytes) bytes): devices with the default partition table will not download it"
            )
        }
        let uploaded = Schemas.FirmwareUploaded(version: servable.manifest.version, manifest: .init(servable.manifest.json), warnings: warnings)
        return .created(.init(body: .json(uploaded)))
    }

    func getFirmwareManifest(_ input: Operations.GetFirmwareManifest.Input) async throws -> Operations.GetFirmwareManifest.Output {
        let version = input.path.version
        guard FirmwareVersion.isValid(version), let firmware = try await ota.catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        guard let manifest = try? JSONParser.parse(firmware.firmware.manifestBytes) else { throw OTAError.noFirmware(version) }
        return .ok(.init(body: .json(.init(manifest))))
    }

    func deleteFirmware(_ input: Operations.DeleteFirmware.Input) async throws -> Operations.DeleteFirmware.Output {
        let version = input.path.version
        guard FirmwareVersion.isValid(version) else { throw OTAError.noFirmware(version) }
        let removed = try await ota.deleteFirmware(version)
        return .ok(.init(body: .json(.init(version: version, removed: removed.map { ($0 as NSString).lastPathComponent }))))
    }

    func listDeployments(_ input: Operations.ListDeployments.Input) async throws -> Operations.ListDeployments.Output {
        let limit = try Self.limit(input.query.limit, default: 100, maximum: 1000)
        let rows = try await rollouts.deployments(
            status: input.query.status.flatMap { RolloutStatus(rawValue: $0.rawValue) },
            before: try PageCursor.integer(input.query.cursor),
            limit: limit
        )
        let next = rows.count == limit ? rows.last.map { PageCursor.encode($0.id) } : nil
        return .ok(.init(body: .json(.init(items: rows.map(Schemas.Deployment.init), nextCursor: next))))
    }

    /// Every target must be known unless `create` is true.
    func createDeployment(_ input: Operations.CreateDeployment.Input) async throws -> Operations.CreateDeployment.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        guard FirmwareVersion.isValid(body.version) else { throw OTAError.noFirmware(body.version) }
        var targets: [String]?
        if let ids = body.deviceIds {
            guard !ids.isEmpty, ids.count <= 100_000, ids.allSatisfy(EcoWattRequestContext.isValidDeviceID) else {
                throw APIError(.unprocessableContent, "device_ids must be a non-empty list of device ids", code: "invalid")
            }
            for id in Set(ids) { try await devices.requireKnown(id, create: body.create ?? false) }
            targets = ids
        }
        let deployment = try await ota.deploy(
            version: body.version,
            deviceIDs: targets,
            maxAttempts: body.maxAttempts ?? 5,
            notes: body.notes,
            createdBy: Self.actor
        )
        return .created(.init(body: .json(.init(deployment))))
    }

    func getDeployment(_ input: Operations.GetDeployment.Input) async throws -> Operations.GetDeployment.Output {
        let id = input.path.deploymentId
        guard let deployment = try await rollouts.deployment(id: id) else { throw OTAError.notFound("No deployment \(id)") }
        return .ok(.init(body: .json(.init(deployment))))
    }

    func cancelDeployment(_ input: Operations.CancelDeployment.Input) async throws -> Operations.CancelDeployment.Output {
        let id = input.path.deploymentId
        guard let deployment = try await rollouts.cancelDeployment(id: id) else { throw OTAError.notFound("No deployment \(id)") }
        return .ok(.init(body: .json(.init(deployment))))
    }

    func getOTAStats(_ input: Operations.GetOTAStats.Input) async throws -> Operations.GetOTAStats.Output {
        .ok(.init(body: .json(try await otaStats())))
    }

    func otaStats() async throws -> Schemas.OTAStats {
        let counts = try await ota.counts()
        let finished = OTAOutcome.allCases.reduce(0) { $0 + (counts.sessionsByOutcome[$1.rawValue] ?? 0) }
        let succeeded = counts.sessionsByOutcome[OTAOutcome.success.rawValue] ?? 0
        var byOutcome = Dictionary(uniqueKeysWithValues: OTAOutcome.allCases.map { ($0.rawValue, counts.sessionsByOutcome[$0.rawValue] ?? 0) })
        byOutcome["active"] = counts.activeSessions
        return Schemas.OTAStats(
            activeSessions: counts.activeSessions,
            sessionsByOutcome: .init(byOutcome),
            successRate: finished > 0 ? Double(succeeded) / Double(finished) : 0,
            chunksServed: counts.chunksServed,
            bytesServed: counts.bytesServed,
            activeDeployments: counts.activeDeployments,
            deployments: counts.deployments,
            firmwares: try await ota.catalog.versions().count,
            keysLoaded: ota.keys != nil
        )
    }
}
