import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage

/// `/api/v1/rollouts` (issue 21): staged rollouts; the rules live in ``RolloutService`` and ``RolloutPlan``.
extension OperatorAPI {
    func createRollout(_ input: Operations.CreateRollout.Input) async throws -> Operations.CreateRollout.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let targets = [body.deviceIds != nil, body.all == true, body.firmwareVersion != nil || body.idPrefix != nil]
        guard targets.filter({ $0 }).count == 1 else {
            throw APIError(
                .unprocessableContent,
                "Give exactly one target: device_ids, all, or a filter (firmware_version, id_prefix)",
                code: "invalid"
            )
        }
        let target: RolloutService.Target
        if let ids = body.deviceIds {
            target = .devices(try ids.map(Self.deviceID))
        } else if body.all == true {
            target = .all
        } else {
            target = .filter(firmwareVersion: body.firmwareVersion, idPrefix: body.idPrefix)
        }
        let created = try await rollouts.create(
            version: body.version,
            target: target,
            settings: try Self.settings(body.settings),
            createdBy: RequestIdentity.current?.principal?.actor ?? "unknown",
            notes: body.notes
        )
        return .created(.init(body: .json(try await rollout(created.id))))
    }

    func listRollouts(_ input: Operations.ListRollouts.Input) async throws -> Operations.ListRollouts.Output {
        let limit = try Self.limit(input.query.limit, default: 50, maximum: 200)
        let page = try await rollouts.list(
            status: input.query.status.flatMap { RolloutStatus(rawValue: $0.rawValue) },
            before: try PageCursor.integer(input.query.cursor),
            limit: limit
        )
        var items: [Schemas.Rollout] = []
        for record in page { items.append(try await rollout(record.id)) }
        let next = page.count == limit ? page.last.map { PageCursor.encode($0.id) } : nil
        return .ok(.init(body: .json(.init(items: items, nextCursor: next))))
    }

    func getRollout(_ input: Operations.GetRollout.Input) async throws -> Operations.GetRollout.Output {
        .ok(.init(body: .json(try await rollout(input.path.rolloutId))))
    }

    func listRolloutDevices(_ input: Operations.ListRolloutDevices.Input) async throws -> Operations.ListRolloutDevices.Output {
        let query = input.query
        let limit = try Self.limit(query.limit, default: 100, maximum: 1000)
        let after = try PageCursor.decode(query.cursor, count: 1)?.first
        let devices = try await rollouts.devices(
            input.path.rolloutId,
            wave: query.wave.map { $0 - 1 },
            state: query.state.flatMap { RolloutDeviceState(rawValue: $0.rawValue) },
            after: after,
            limit: limit
        )
        let next = devices.count == limit ? devices.last.map { PageCursor.encode([$0.deviceID]) } : nil
        return .ok(.init(body: .json(.init(items: devices.map(Schemas.RolloutDevice.init), nextCursor: next))))
    }

    func pauseRollout(_ input: Operations.PauseRollout.Input) async throws -> Operations.PauseRollout.Output {
        .ok(
            .init(body: .json(try await steered(input.path.rolloutId) { try await $0.setStatus($1, to: .paused, reason: "paused by \(Self.actor)") }))
        )
    }

    func resumeRollout(_ input: Operations.ResumeRollout.Input) async throws -> Operations.ResumeRollout.Output {
        .ok(.init(body: .json(try await steered(input.path.rolloutId) { try await $0.setStatus($1, to: .active, reason: nil) })))
    }

    func cancelRollout(_ input: Operations.CancelRollout.Input) async throws -> Operations.CancelRollout.Output {
        .ok(
            .init(
                body: .json(
                    try await steered(input.path.rolloutId) { try await $0.setStatus($1, to: .cancelled, reason: "cancelled by \(Self.actor)") }
                )
            )
        )
    }

    func advanceRollout(_ input: Operations.AdvanceRollout.Input) async throws -> Operations.AdvanceRollout.Output {
        .ok(.init(body: .json(try await steered(input.path.rolloutId) { try await $0.advance($1) })))
    }

    func retryRollout(_ input: Operations.RetryRollout.Input) async throws -> Operations.RetryRollout.Output {
        .ok(.init(body: .json(try await steered(input.path.rolloutId) { try await $0.retryFailed($1) })))
    }

    /// Applies an operator's action to rollout `id` and answers the rollout as it is then.
    private func steered<T>(_ id: Int64, _ action: (RolloutService, Int64) async throws -> T) async throws -> Schemas.Rollout {
        _ = try await action(rollouts, id)
        return try await rollout(id)
    }

    func rollbackRollout(_ input: Operations.RollbackRollout.Input) async throws -> Operations.RollbackRollout.Output {
        var version: String?
        if case .json(let body)? = input.body { version = body.version }
        let created = try await rollouts.rollback(input.path.rolloutId, to: version, createdBy: Self.actor)
        return .created(.init(body: .json(try await rollout(created.id))))
    }

    static var actor: String { RequestIdentity.current?.principal?.actor ?? "an operator" }

    /// The rollout with its waves' counts.
    func rollout(_ id: Int64) async throws -> Schemas.Rollout {
        let (record, counts) = try await rollouts.status(id)
        let waves = (0..<record.waveCount).map { wave in
            let states = counts[wave] ?? [:]
            return Schemas.RolloutWave(
                wave: wave + 1,
                open: wave <= record.currentWave,
                targeted: states.values.reduce(0, +),
                counts: .init(additionalProperties: Dictionary(uniqueKeysWithValues: states.map { ($0.key.rawValue, $0.value) }))
            )
        }
        let total = counts.values.reduce(into: [String: Int]()) { total, states in
            for (state, count) in states { total[state.rawValue, default: 0] += count }
        }
        return Schemas.Rollout(
            id: record.id,
            version: record.version,
            status: Schemas.RolloutStatus(rawValue: record.status.rawValue) ?? .cancelled,
            reason: record.reason,
            currentWave: record.currentWave + 1,
            waveCount: record.waveCount,
            waveOpenedAt: date(record.waveOpenedAtMs),
            settings: Schemas.RolloutSettings(record.settings),
            waves: waves,
            counts: .init(additionalProperties: total),
            createdBy: record.createdBy,
            notes: record.notes,
            createdAt: date(record.createdAtMs),
            updatedAt: date(record.updatedAtMs)
        )
    }

    /// The body's settings over the defaults; waves must increase.
    static func settings(_ body: Schemas.RolloutSettings?) throws -> RolloutSettings {
        var settings = RolloutSettings()
        guard let body else { return settings }
        if let waves = body.waves {
            guard zip(waves, waves.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw APIError(.unprocessableContent, "waves must be increasing percentages", code: "invalid")
            }
            settings.wavePercents = waves
        }
        settings.minDevicesPerWave = body.minDevicesPerWave ?? settings.minDevicesPerWave
        settings.successPercent = body.successPercent ?? settings.successPercent
        settings.haltFailurePercent = body.haltFailurePercent ?? settings.haltFailurePercent
        settings.minFinished = body.minFinished ?? settings.minFinished
        settings.haltFailureCount = body.haltFailureCount ?? settings.haltFailureCount
        settings.healthUploads = body.healthUploads ?? settings.healthUploads
        settings.healthMinutes = body.healthMinutes ?? settings.healthMinutes
        settings.downloadTimeoutMinutes = body.downloadTimeoutMinutes ?? settings.downloadTimeoutMinutes
        settings.healthTimeoutMinutes = body.healthTimeoutMinutes ?? settings.healthTimeoutMinutes
        settings.waveTimeoutMinutes = body.waveTimeoutMinutes ?? settings.waveTimeoutMinutes
        settings.waveDelayMinutes = body.waveDelayMinutes ?? settings.waveDelayMinutes
        settings.maxConcurrentDownloads = body.maxConcurrentDownloads ?? settings.maxConcurrentDownloads
        settings.maxNewDownloadsPerMinute = body.maxNewDownloadsPerMinute ?? settings.maxNewDownloadsPerMinute
        settings.maxAttempts = body.maxAttempts ?? settings.maxAttempts
        return settings
    }
}

extension Schemas.RolloutSettings {
    init(_ settings: RolloutSettings) {
        self.init(
            waves: settings.wavePercents,
            minDevicesPerWave: settings.minDevicesPerWave,
            successPercent: settings.successPercent,
            haltFailurePercent: settings.haltFailurePercent,
            minFinished: settings.minFinished,
            haltFailureCount: settings.haltFailureCount,
            healthUploads: settings.healthUploads,
            healthMinutes: settings.healthMinutes,
            downloadTimeoutMinutes: settings.downloadTimeoutMinutes,
            healthTimeoutMinutes: settings.healthTimeoutMinutes,
            waveTimeoutMinutes: settings.waveTimeoutMinutes,
            waveDelayMinutes: settings.waveDelayMinutes,
            maxConcurrentDownloads: settings.maxConcurrentDownloads,
            maxNewDownloadsPerMinute: settings.maxNewDownloadsPerMinute,
            maxAttempts: settings.maxAttempts,
            kind: Schemas.RolloutSettings.KindPayload(rawValue: settings.kind.rawValue),
            followsFleet: settings.followsFleet
        )
    }
}

extension Schemas.RolloutDevice {
    init(_ device: RolloutDeviceRecord) {
        self.init(
            deviceId: device.deviceID,
            wave: device.wave + 1,
            state: Schemas.RolloutDeviceState(rawValue: device.state.rawValue) ?? .pending,
            reason: device.reason,
            fromVersion: device.fromVersion,
            startedAt: date(device.startedAtMs),
            installedAt: date(device.installedAtMs),
            finishedAt: date(device.finishedAtMs),
            healthyUploads: device.healthyUploads,
            updatedAt: date(device.updatedAtMs)
        )
    }
}
