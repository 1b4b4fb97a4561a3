import EcoWattProtocol
import EcoWattStorage
import Logging
import ServiceLifecycle
import Synchronization

/// The once-per-boot messages — registration (`POST /devices`), the OTA completion report and the boot report — that
/// a device sends before its first upload, unretried (spec §0.7), and after an OTA reboot or a DHCP change possibly
/// from a new address (issue 14).
///
/// From the device's bound address they take effect at once. From any other address they are *held*: recorded, and
/// applied only if a verified upload from that same address follows within the hold window; otherwise discarded and
/// counted. A first-boot device (no verified upload yet) registers the same way. A held boot signal that an upload
/// confirms takes effect before that upload's packets are decoded (they are the first batches of the new boot).
public final class BootMessages: Service, Sendable {
    let store: any BindingStore
    let registry: any DeviceRegistryStore & ConfigStore
    let ota: OTAService
    let ingest: IngestService
    let windowMs: Int64
    let caps: RowCap
    let metrics: ServerMetrics?
    let logger: Logger
    /// Other instances share the store: they hold and confirm messages too.
    let notices: InstanceNotices
    private var shared: Bool { notices.shared }

    private struct State {
        /// Held messages by device, oldest first.
        var byDevice: [String: [HeldMessage]] = [:]
        var count = 0
        /// Every message in the order it was held (entries of removed messages are skipped when met): the oldest in
        /// all is found without a scan when the total cap is reached.
        var order: [(deviceID: String, id: Int64)] = []
        var head = 0

        mutating func dropOldest() -> Bool {
            while head < order.count {
                let (deviceID, id) = order[head]
                head += 1
                if let index = byDevice[deviceID]?.firstIndex(where: { $0.id == id }) {
                    byDevice[deviceID]?.remove(at: index)
                    if byDevice[deviceID]?.isEmpty == true { byDevice[deviceID] = nil }
                    count -= 1
                    compact()
                    return true
                }
            }
            compact()
            return false
        }

        mutating func compact() {
            if head > 1024, head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
        }

        /// Drops the entries of messages that were replaced, confirmed or expired once they outnumber the live ones:
        /// a stream of holds that replace each other must not grow `order` without bound.
        mutating func pruneOrder() {
            guard order.count - head > 2 * count + 1024 else { return }
            let live = Set(byDevice.values.flatMap { $0.map(\.id) })
            order = order[head...].filter { live.contains($0.id) }
            head = 0
        }
    }
    private let state: Mutex<State>

    init(
        store: any BindingStore,
        registry: any DeviceRegistryStore & ConfigStore,
        ota: OTAService,
        ingest: IngestService,
        windowSeconds: Int,
        caps: RowCap,
        metrics: ServerMetrics?,
        logger: Logger,
        notices: InstanceNotices = InstanceNotices(feed: nil)
    ) async throws {
        self.notices = notices
        self.store = store
        self.registry = registry
        self.ota = ota
        self.ingest = ingest
        self.windowMs = Int64(windowSeconds) * 1000
        self.caps = caps
        self.metrics = metrics
        self.logger = logger
        var initial = State()
        for message in try await store.heldMessages() {
            initial.byDevice[message.deviceID, default: []].append(message)
            initial.order.append((message.deviceID, message.id))
            initial.count += 1
        }
        state = Mutex(initial)
    }

    // MARK: The three messages

    /// `POST /devices`: `true`/`false` when applied (new device or not), `nil` when held.
    /// - Parameter standing: where the request stands for the device (``DeviceAccess/standing(_:address:)``).
    public func registration(
        deviceID: String,
        fields: DeviceFields,
        address: String,
        standing: DeviceBinding.Standing,
        nowMs: Int64
    ) async throws -> Bool? {
        guard standing == .bound else {
            try await hold(.registration, deviceID: deviceID, address: address, body: fields.json, nowMs: nowMs)
            return nil
        }
        return try await applyRegistration(deviceID: deviceID, fields: fields, nowMs: nowMs, bootSignal: true)
    }

    /// `POST /ota/{id}/complete`: the session's outcome when applied (`.some(nil)` without a session), `nil` when held.
    public func completion(
        deviceID: String,
        report: CompletionReport,
        address: String,
        standing: DeviceBinding.Standing,
        nowMs: Int64
    ) async throws -> OTAOutcome?? {
        guard standing == .bound else {
            try await hold(.complete, deviceID: deviceID, address: address, body: report.json, nowMs: nowMs)
            return nil
        }
        return .some(try await ota.complete(deviceID: deviceID, version: report.version, status: report.status, error: report.error).outcome)
    }

    /// `POST /config/{id}/current`: `true` when applied, `false` when held.
    public func bootReport(
        deviceID: String,
        report: JSONValue,
        address: String,
        standing: DeviceBinding.Standing,
        nowMs: Int64
    ) async throws -> Bool {
        guard standing == .bound else {
            try await hold(.bootReport, deviceID: deviceID, address: address, body: report, nowMs: nowMs)
            return false
        }
        try await ingest.bootSignal(deviceID, atMs: nowMs)
        try await registry.recordRunning(deviceID: deviceID, report: report, nowMs: nowMs)
        return true
    }

    private func applyRegistration(deviceID: String, fields: DeviceFields, nowMs: Int64, bootSignal: Bool) async throws -> Bool {
        let created = try await registry.register(deviceID: deviceID, fields: fields, nowMs: nowMs)
        if bootSignal { try await ingest.bootSignal(deviceID, atMs: nowMs) }
        return created
    }

    // MARK: Holding and confirming

    /// ``bootSignalHeld(deviceID:address:nowMs:)``, asking the store first when this instance holds nothing for the
    /// device and other instances share the store (one of them may have held it).
    public func bootSignal(deviceID: String, address: String, nowMs: Int64) async -> Int64? {
        if let held = bootSignalHeld(deviceID: deviceID, address: address, nowMs: nowMs) { return held }
        guard shared else { return nil }
        await reload(deviceID)
        return bootSignalHeld(deviceID: deviceID, address: address, nowMs: nowMs)
    }

    /// Replaces what this instance holds for `deviceID` with what the store holds (another instance held or confirmed
    /// messages of the device).
    public func reload(_ deviceID: String) async {
        do {
            let messages = try await store.heldMessages(deviceID: deviceID)
            state.withLock { state in
                state.count += messages.count - (state.byDevice[deviceID]?.count ?? 0)
                let known = Set(state.byDevice[deviceID]?.map(\.id) ?? [])
                state.order += messages.filter { !known.contains($0.id) }.map { (deviceID, $0.id) }
                state.byDevice[deviceID] = messages.isEmpty ? nil : messages
                state.pruneOrder()
            }
        } catch {
            logger.warning("held messages not reloaded", metadata: ["device_id": LogText.value(deviceID), "error": "\(error.logDescription)"])
        }
    }

    /// When the latest boot signal (registration or boot report) of `deviceID` from `address` held within the window
    /// was received, if one is: the verified upload about to be decoded confirms it.
    public func bootSignalHeld(deviceID: String, address: String, nowMs: Int64) -> Int64? {
        state.withLock { state in
            state.byDevice[deviceID]?.filter {
                $0.address == address && $0.kind != .complete && nowMs - $0.receivedAtMs <= windowMs
            }.map(\.receivedAtMs).max()
        }
    }

    /// A verified upload of `deviceID` from `address` committed: its held messages from that address take effect (the
    /// boot signal already did, before the upload was decoded).
    public func confirm(deviceID: String, address: String, nowMs: Int64) async {
        let confirmed = state.withLock { state -> [HeldMessage] in
            guard let messages = state.byDevice[deviceID] else { return [] }
            let taken = messages.filter { $0.address == address && nowMs - $0.receivedAtMs <= windowMs }
            guard !taken.isEmpty else { return [] }
            let remaining = messages.filter { message in !taken.contains { $0.id == message.id } }
            state.byDevice[deviceID] = remaining.isEmpty ? nil : remaining
            state.count -= taken.count
            return taken
        }
        guard !confirmed.isEmpty else { return }
        for message in confirmed {
            do {
                switch message.kind {
                case .registration:
                    _ = try await applyRegistration(deviceID: deviceID, fields: DeviceFields(json: message.body), nowMs: nowMs, bootSignal: false)
                case .complete:
                    if let report = CompletionReport(json: message.body) {
                        _ = try await ota.complete(deviceID: deviceID, version: report.version, status: report.status, error: report.error)
                    }
                case .bootReport:
                    try await registry.recordRunning(deviceID: deviceID, report: message.body, nowMs: message.receivedAtMs)
                }
                metrics?.increment("ecowatt_held_messages_total", [("kind", message.kind.rawValue), ("outcome", "applied")])
            } catch {
                logger.warning(
                    "held message not applied",
                    metadata: ["device_id": LogText.value(deviceID), "kind": "\(message.kind.rawValue)", "error": "\(error.logDescription)"]
                )
            }
        }
        try? await store.deleteHeld(confirmed.map(\.id))
        await notices.announce(.held, deviceID)
    }

    private func hold(_ kind: HeldMessageKind, deviceID: String, address: String, body: JSONValue, nowMs: Int64) async throws {
        let stored = try await store.hold(
            HeldMessage(deviceID: deviceID, address: address, kind: kind, body: body, receivedAtMs: nowMs)
        )
        metrics?.increment("ecowatt_held_messages_total", [("kind", kind.rawValue), ("outcome", "held")])
        // The same bounds as the table: one per kind and address, `caps.perDevice` per device, `caps.total` in all.
        let dropped = state.withLock { state -> Int in
            var messages = (state.byDevice[deviceID] ?? []).filter { !($0.address == address && $0.kind == kind) }
            let replaced = (state.byDevice[deviceID]?.count ?? 0) - messages.count
            messages.append(stored)
            let excess = max(0, messages.count - caps.perDevice)
            messages.removeFirst(excess)
            state.byDevice[deviceID] = messages
            state.order.append((deviceID, stored.id))
            state.count += 1 - replaced - excess
            state.pruneOrder()
            var dropped = excess
            while state.count > caps.total, state.dropOldest() { dropped += 1 }
            return dropped
        }
        if dropped > 0 {
            metrics?.increment("ecowatt_held_messages_total", [("kind", kind.rawValue), ("outcome", "dropped")], by: dropped)
        }
        await notices.announce(.held, deviceID)
    }

    /// Messages no upload confirmed within the window are discarded.
    public func expire(nowMs: Int64) async {
        let expired = state.withLock { state -> [HeldMessage] in
            var expired: [HeldMessage] = []
            for (deviceID, messages) in state.byDevice {
                let old = messages.filter { nowMs - $0.receivedAtMs > windowMs }
                guard !old.isEmpty else { continue }
                expired += old
                let remaining = messages.filter { nowMs - $0.receivedAtMs <= windowMs }
                state.byDevice[deviceID] = remaining.isEmpty ? nil : remaining
            }
            state.count -= expired.count
            return expired
        }
        guard !expired.isEmpty else { return }
        for message in expired {
            metrics?.increment("ecowatt_held_messages_total", [("kind", message.kind.rawValue), ("outcome", "discarded")])
        }
        try? await store.deleteHeld(expired.map(\.id))
    }

    /// Messages held in all, and the entries kept to find the oldest (bounded by about twice the messages).
    public var bookkeeping: (messages: Int, entries: Int) {
        state.withLock { ($0.count, $0.order.count - $0.head) }
    }

    /// Held messages now, by kind (for tests and operators).
    public func held(deviceID: String) -> [HeldMessage] {
        state.withLock { $0.byDevice[deviceID] ?? [] }
    }

    public func run() async throws {
        await repeatUntilShutdown(every: .seconds(30)) { await self.expire(nowMs: self.ota.clock()) }
    }
}

/// `POST /ota/{id}/complete` as the firmware sends it (spec §7.1 step 10).
public struct CompletionReport: Sendable, Equatable {
    public var version: String
    public var status: String
    public var error: String?

    public init(version: String, status: String, error: String?) {
        self.version = version
        self.status = status
        self.error = error
    }

    var json: JSONValue {
        .object([("version", .string(version)), ("status", .string(status)), ("error_msg", error.map(JSONValue.string) ?? .null)])
    }

    init?(json: JSONValue) {
        guard let version = json["version"]?.stringValue, let status = json["status"]?.stringValue else { return nil }
        self.init(version: version, status: status, error: json["error_msg"]?.stringValue)
    }
}

extension DeviceFields {
    var json: JSONValue {
        .object(
            [
                ("device_name", deviceName), ("location", location), ("description", description), ("firmware_version", firmwareVersion),
            ].map { ($0.0, $0.1.map(JSONValue.string) ?? .null) }
        )
    }

    init(json: JSONValue) {
        self.init(
            deviceName: json["device_name"]?.stringValue,
            location: json["location"]?.stringValue,
            description: json["description"]?.stringValue,
            firmwareVersion: json["firmware_version"]?.stringValue
        )
    }
}
