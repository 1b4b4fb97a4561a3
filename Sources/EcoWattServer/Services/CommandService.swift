import EcoWattProtocol
import EcoWattStorage
import Logging
import ServiceLifecycle
import Synchronization

/// Operator command queues (spec §4): queueing with validation, one command per poll, results, and a background
/// sweep that times out dispatched commands without a result and expires pending ones past their TTL.
///
/// A class, not an actor: its only mutable state is the pending hint under its own lock; the queues are the store's.
public final class CommandService: Service, Sendable {
    private let store: any CommandStore
    private let logger: Logger
    private let clock: @Sendable () -> Int64
    /// A dispatched command with no result after this long is `timed_out`.
    public let resultTimeoutMs: Int64
    /// Most pending commands one device may have.
    public let maxPending: Int
    /// Expiry of a command queued without one (`command_default_ttl_seconds`): a command for a device that never
    /// polls does not wait forever.
    public let defaultTTLMs: Int64

    public static let sweepInterval = Duration.seconds(5)

    /// Devices that may have pending commands, with a version bumped on every queue. An empty poll (the common case)
    /// answers from here without touching SQLite; a poll that finds nothing removes the device only if no command
    /// was queued meanwhile (same version), so a concurrent queue is never lost.
    private let pendingHint: Mutex<[String: UInt64]>
    /// Other instances learn of queued commands (their polls answer from their own hints).
    private let notices: InstanceNotices
    /// Told when a device's commands changed (the dashboard's live streams).
    private let changed: @Sendable (_ deviceID: String) -> Void
    /// Told of each command that timed out without a result (a device problem).
    private let overdue: @Sendable (_ deviceID: String) -> Void

    /// Reads the devices with pending commands from the store (so queued commands survive restarts).
    public init(
        store: any CommandStore,
        resultTimeoutSeconds: Int,
        maxPending: Int,
        defaultTTLSeconds: Int = 86_400,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64,
        changed: @escaping @Sendable (_ deviceID: String) -> Void = { _ in },
        overdue: @escaping @Sendable (_ deviceID: String) -> Void = { _ in },
        notices: InstanceNotices = InstanceNotices(feed: nil)
    ) async throws {
        self.notices = notices
        self.changed = changed
        self.overdue = overdue
        pendingHint = Mutex(Dictionary(uniqueKeysWithValues: try await store.devicesWithPendingCommands().map { ($0, 0) }))
        self.store = store
        self.resultTimeoutMs = Int64(resultTimeoutSeconds) * 1000
        self.maxPending = maxPending
        self.defaultTTLMs = Int64(defaultTTLSeconds) * 1000
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        await repeatUntilShutdown(every: Self.sweepInterval) { await self.sweep() }
    }

    /// Applies timeouts and expiries now.
    public func sweep() async {
        do {
            let (timedOut, expired) = try await store.sweepCommands(nowMs: clock(), resultTimeoutMs: resultTimeoutMs)
            if !timedOut.isEmpty || !expired.isEmpty {
                logger.notice("commands swept", metadata: ["timed_out": "\(timedOut.count)", "expired": "\(expired.count)"])
            }
            for deviceID in Set(timedOut + expired) { changed(deviceID) }
            for deviceID in timedOut { overdue(deviceID) }
        } catch  where error.isShutdown {
        } catch {
            logger.warning("command sweep failed", metadata: ["error": "\(error.logDescription)"])
        }
    }

    /// Another instance queued a command for `deviceID`: the next poll here looks in the store.
    public func queuedElsewhere(_ deviceID: String) {
        pendingHint.withLock { $0[deviceID, default: 0] &+= 1 }
    }

    public func queue(_ request: CommandRequest, deviceID: String) async throws -> (CommandRow, Bool) {
        defer {
            pendingHint.withLock { $0[deviceID, default: 0] &+= 1 }
            changed(deviceID)
        }
        let now = clock()
        var request = request
        if request.expiresAtMs == nil { request.expiresAtMs = now.addingReportingOverflow(defaultTTLMs).partialValue }
        let queued = try await store.queue(request, deviceID: deviceID, nowMs: now, maxPending: maxPending)
        await notices.announce(.commands, deviceID)
        return queued
    }

    /// A device's commands (every device's without `deviceID`), newest first (of `status`, below the sequence
    /// `before`, when given).
    public func commands(deviceID: String?, status: CommandStatus?, before: Int64?, limit: Int) async throws -> [CommandRow] {
        try await store.commands(deviceID: deviceID, status: status, before: before, limit: limit)
    }

    /// The device's next command, dispatched to `address` (its result is accepted from there only).
    public func poll(deviceID: String, address: String) async throws -> CommandRow? {
        guard let version = pendingHint.withLock({ $0[deviceID] }) else { return nil }
        let command = try await store.dispatchNext(deviceID: deviceID, address: address, nowMs: clock())
        if command == nil {
            pendingHint.withLock { if $0[deviceID] == version { $0.removeValue(forKey: deviceID) } }
        } else {
            changed(deviceID)
        }
        return command
    }

    public func result(_ report: CommandResultReport, deviceID: String, address: String) async throws -> CommandRow {
        defer { changed(deviceID) }
        return try await store.recordResult(
            CommandResult(
                commandID: report.commandID,
                succeeded: report.succeeded,
                executedAt: report.executedAt,
                resultJSON: report.resultJSON,
                errorMessage: report.errorMessage
            ),
            deviceID: deviceID,
            address: address,
            nowMs: clock()
        )
    }

    public func command(_ id: String) async throws -> CommandRow? { try await store.command(id) }
    public func cancel(_ id: String) async throws -> CommandRow {
        let row = try await store.cancelCommand(id, nowMs: clock())
        changed(row.deviceID)
        return row
    }
    public func counts() async throws -> [CommandStatus: Int] { try await store.commandCounts() }
}
