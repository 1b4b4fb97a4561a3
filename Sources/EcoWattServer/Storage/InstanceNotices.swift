import EcoWattStorage
import Logging
import ServiceLifecycle

/// Announces this instance's changes of state the other instances cache, when several share a PostgreSQL database
/// (issue 22); does nothing on SQLite.
public final class InstanceNotices: Sendable {
    let feed: (any ChangeFeed)?

    public init(feed: (any ChangeFeed)?) {
        self.feed = feed
    }

    /// Other instances share the store.
    public var shared: Bool { feed != nil }

    /// Tells the others, after the commit, that `kind` of `deviceID` changed.
    public func announce(_ kind: InstanceChange.Kind, _ deviceID: String) async {
        await feed?.announce(InstanceChange(kind, deviceID: deviceID))
    }
}

/// Applies what other instances announce: reloads the named device's binding or held messages, notes its queued
/// commands, reloads device keys; everything after the feed was interrupted.
struct InstanceChangeListener: Service {
    let feed: any ChangeFeed
    let devices: any DeviceRegistryStore & BindingStore & CommandStore
    let binding: DeviceBinding
    let boot: BootMessages
    let commands: CommandService
    let ingest: IngestService
    let ota: OTAService
    let rollouts: RolloutService
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await change in feed.changes { await apply(change) }
        }
    }

    func apply(_ change: InstanceChange) async {
        do {
            switch change.kind {
            case .binding:
                binding.adopt(change.deviceID, try await devices.device(change.deviceID)?.binding)
            case .held:
                await boot.reload(change.deviceID)
            case .commands:
                commands.queuedElsewhere(change.deviceID)
            case .ota:
                await ota.sessionChangedElsewhere(change.deviceID)
            case .keys:
                await ingest.refreshKeys()
            case .firmware:
                ota.catalog.forget(change.deviceID)
            case .rollout:
                await rollouts.deviceChangedElsewhere(change.deviceID)
            case .everything:
                ota.catalog.forget(nil)
                await rollouts.loadAwaitingHealth(replacing: true)
                for (deviceID, record) in try await devices.bindings() { binding.adopt(deviceID, record) }
                for deviceID in Set(try await devices.heldMessages().map(\.deviceID)) { await boot.reload(deviceID) }
                for deviceID in try await devices.devicesWithPendingCommands() { commands.queuedElsewhere(deviceID) }
                await ingest.refreshKeys()
                await ota.reloadSessions()
            }
        } catch {
            logger.warning("change of another instance not applied", metadata: ["change": "\(change.payload)", "error": "\(error.logDescription)"])
        }
    }
}
