/// What other server instances changed in state this instance keeps in memory (issue 22): device bindings, held boot
/// messages, pending commands, OTA sessions, per-device keys and the firmware images an instance serves from memory. Each instance caches these for its device routes; an
/// instance that commits a change announces it, and the others reload what it names from the store. The embedded
/// backend runs one instance and has no feed.
public protocol ChangeFeed: Sendable {
    /// Tells the other instances that `change` was committed.
    func announce(_ change: InstanceChange) async
    /// Changes announced by other instances (never this one's own), for the one consumer; ``InstanceChange/everything``
    /// after the feed was interrupted (notices may have been missed: reload all).
    var changes: AsyncStream<InstanceChange> { get }
}

/// One announced change: what kind of cached state, of which device.
public struct InstanceChange: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case binding, held, commands, ota, keys, everything
        /// A firmware image was added or deleted: ``InstanceChange/deviceID`` holds its version.
        case firmware
        /// The device started or stopped waiting for health evidence in a rollout.
        case rollout
    }

    public var kind: Kind
    /// The device, or for ``Kind/firmware`` the version.
    public var deviceID: String

    public init(_ kind: Kind, deviceID: String) {
        self.kind = kind
        self.deviceID = deviceID
    }

    public static let everything = InstanceChange(.everything, deviceID: "")

    /// The notice's text, `kind device` (device ids never hold a space: the routes refuse them).
    public var payload: String { "\(kind.rawValue) \(deviceID)" }

    public init?(payload: String) {
        guard let space = payload.firstIndex(of: " "), let kind = Kind(rawValue: String(payload[..<space])) else { return nil }
        self.init(kind, deviceID: String(payload[payload.index(after: space)...]))
    }
}
