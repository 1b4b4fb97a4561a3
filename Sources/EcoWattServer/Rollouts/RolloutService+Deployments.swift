import EcoWattStorage
import Foundation

/// Deployments are one-wave rollouts (issue 21): `POST /api/v1/deployments` creates a rollout of kind `deployment`
/// with one wave at 100 %, the deployment's attempts limit and, for every device, one that follows the fleet. The
/// deployments API reads and cancels those rollouts; deployment `N` is rollout `N`.
extension RolloutService {
    /// A deployment of `version` to every device (`deviceIDs == nil`) or to a list.
    public func deploy(
        version: String,
        deviceIDs: [String]?,
        maxAttempts: Int,
        notes: String?,
        createdBy: String
    ) async throws
        -> RolloutRecord
    {
        var settings = RolloutSettings()
        settings.kind = .deployment
        settings.wavePercents = [100]
        settings.followsFleet = deviceIDs == nil
        settings.maxAttempts = maxAttempts
        return try await create(
            version: version,
            target: deviceIDs.map { .devices($0) } ?? .all,
            settings: settings,
            createdBy: createdBy,
            notes: notes
        )
    }

    /// The deployment view of a rollout of kind `deployment`.
    public func deploymentView(_ rollout: RolloutRecord) async throws -> OTADeployment {
        let devices =
            rollout.settings.followsFleet ? nil : try await store.allRolloutDevices(rolloutID: rollout.id, state: nil).map(\.deviceID)
        return OTADeployment(
            id: rollout.id,
            version: rollout.version,
            deviceIDs: devices,
            status: rollout.status.rawValue,
            maxAttempts: rollout.settings.maxAttempts,
            notes: rollout.notes,
            createdAtMs: rollout.createdAtMs,
            cancelledAtMs: rollout.status == .cancelled ? rollout.updatedAtMs : nil
        )
    }

    /// Deployments newest first, of `status` when given, with an id below `before` when given.
    public func deployments(status: RolloutStatus?, before: Int64?, limit: Int) async throws -> [OTADeployment] {
        var found: [OTADeployment] = []
        var cursor = before
        while found.count < limit {
            let page = try await store.rollouts(status: status, before: cursor, limit: 200)
            for rollout in page where rollout.settings.kind == .deployment && found.count < limit {
                found.append(try await deploymentView(rollout))
            }
            guard page.count == 200, let last = page.last else { break }
            cursor = last.id
        }
        return found
    }

    public func deployment(id: Int64) async throws -> OTADeployment? {
        guard let rollout = try await store.rollout(id: id), rollout.settings.kind == .deployment else { return nil }
        return try await deploymentView(rollout)
    }

    /// Cancels an open deployment (a closed one stays as it is); `nil` when there is no deployment `id`.
    public func cancelDeployment(id: Int64) async throws -> OTADeployment? {
        guard let rollout = try await store.rollout(id: id), rollout.settings.kind == .deployment else { return nil }
        guard rollout.status.isOpen else { return try await deploymentView(rollout) }
        return try await deploymentView(try await setStatus(id, to: .cancelled, reason: "cancelled by operator"))
    }

    /// Ids of the open rollouts and deployments of `version` (its image may not be deleted while they are).
    public func openRolloutIDs(version: String) async throws -> [Int64] {
        try await openRollouts().filter { $0.version == version }.map(\.id)
    }

    /// Open deployments and all deployments.
    public func deploymentCounts() async throws -> (open: Int, all: Int) {
        var counts = (open: 0, all: 0)
        var cursor: Int64?
        while true {
            let page = try await store.rollouts(status: nil, before: cursor, limit: 1000)
            for rollout in page where rollout.settings.kind == .deployment {
                counts.all += 1
                if rollout.status.isOpen { counts.open += 1 }
            }
            guard page.count == 1000, let last = page.last else { return counts }
            cursor = last.id
        }
    }

    // MARK: Devices that join a deployment to every device

    /// The newest active rollout that follows the fleet, offered to a known, admitted device in no open rollout.
    func fleetWideOffer(deviceID: String, runningVersion: String) async throws -> Offer {
        guard let rollout = try await fleetWideRollout(for: deviceID) else { return .withheld("no deployment") }
        guard runningVersion != rollout.version else { return .withheld("already running \(rollout.version)") }
        if let pacing = pacingRefusal(rollout, downloading: try await downloading(rollout)) {
            return .withheld("rollout \(rollout.id): \(pacing)")
        }
        return .offer(version: rollout.version)
    }

    /// A device in no open rollout (the caller read that) that starts a download of the version of a rollout that
    /// follows the fleet joins it; returns whether it did.
    func joinFleetWide(deviceID: String, version: String) async -> Bool {
        do {
            guard let rollout = try await fleetWideRollout(for: deviceID), rollout.version == version else { return false }
            let fromVersion = try await store.device(deviceID)?.firmwareVersion
            try await store.addRolloutDevices(
                rolloutID: rollout.id,
                devices: [RolloutDeviceRecord(deviceID: deviceID, wave: 0, fromVersion: fromVersion, nowMs: clock())]
            )
            return true
        } catch {
            logger.warning(
                "device did not join the deployment",
                metadata: ["device_id": LogText.value(deviceID), "error": "\(error.logDescription)"]
            )
            return false
        }
    }

    func fleetWideRollout(for deviceID: String) async throws -> RolloutRecord? {
        guard let rollout = try await store.rollouts(status: .active, before: nil, limit: 100).first(where: \.settings.followsFleet),
            let device = try await store.device(deviceID), device.admission != "pending"
        else { return nil }
        return rollout
    }

    // MARK: Deployments stored before they were rollouts

    /// Active deployments of the table deployments had before they were rollouts become deployment rollouts (oldest
    /// first, so the newest wins where they overlap); the old rows are cancelled. Runs once at start.
    func adoptLegacyDeployments() async {
        do {
            for legacy in try await store.deployments(status: "active", before: nil, limit: 10_000).reversed() {
                do {
                    let adopted = try await deploy(
                        version: legacy.version,
                        deviceIDs: legacy.deviceIDs,
                        maxAttempts: legacy.maxAttempts,
                        notes: legacy.notes,
                        createdBy: "deployment \(legacy.id)"
                    )
                    logger.notice("deployment adopted as a rollout", metadata: ["deployment": "\(legacy.id)", "rollout": "\(adopted.id)"])
                } catch {
                    logger.warning("deployment not adopted", metadata: ["deployment": "\(legacy.id)", "error": "\(error.logDescription)"])
                }
                _ = try await store.cancelDeployment(id: legacy.id, nowMs: clock())
            }
        } catch {
            logger.warning("deployments not adopted", metadata: ["error": "\(error.logDescription)"])
        }
    }
}
