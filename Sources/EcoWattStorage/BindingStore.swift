import EcoWattProtocol
import Foundation

/// A device's authenticated network identity: the client address of its last verified upload.
public struct DeviceBindingRecord: Sendable, Equatable {
    public var address: String
    public var atMs: Int64

    public init(address: String, atMs: Int64) {
        self.address = address
        self.atMs = atMs
    }
}

extension DeviceRow {
    /// The device's binding as its row stores it (`nil`: no verified upload bound it yet).
    public var binding: DeviceBindingRecord? {
        boundAddress.map { DeviceBindingRecord(address: $0, atMs: boundAtMs ?? 0) }
    }
}

/// The once-per-boot messages a device sends before its first upload, unretried.
public enum HeldMessageKind: String, Sendable, CaseIterable {
    case registration
    case complete
    case bootReport = "boot_report"
}

/// A once-per-boot message from an address the device is not bound to, waiting for a verified upload from that
/// address (issue 14).
public struct HeldMessage: Sendable, Equatable {
    public var id: Int64
    public var deviceID: String
    public var address: String
    public var kind: HeldMessageKind
    public var body: JSONValue
    public var receivedAtMs: Int64

    public init(id: Int64 = 0, deviceID: String, address: String, kind: HeldMessageKind, body: JSONValue, receivedAtMs: Int64) {
        self.id = id
        self.deviceID = deviceID
        self.address = address
        self.kind = kind
        self.body = body
        self.receivedAtMs = receivedAtMs
    }
}

/// Bindings and held messages (issue 14).
public protocol BindingStore: Sendable {
    /// Every device's binding (read once at start).
    func bindings() async throws -> [String: DeviceBindingRecord]
    /// Every held message, oldest first (read once at start).
    func heldMessages() async throws -> [HeldMessage]
    /// The held messages of one device, oldest first (another instance held or confirmed some).
    func heldMessages(deviceID: String) async throws -> [HeldMessage]
    /// Stores a held message, replacing an earlier one of the same kind from the same address; returns it with its id.
    func hold(_ message: HeldMessage) async throws -> HeldMessage
    /// Deletes held messages by id.
    func deleteHeld(_ ids: [Int64]) async throws
}
