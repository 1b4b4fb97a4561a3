import EcoWattProtocol
import GRDB

/// A device's authenticated network identity: the client address of its last verified upload.
public struct DeviceBindingRecord: Sendable, Equatable {
    public var address: String
    public var atMs: Int64

    public init(address: String, atMs: Int64) {
        self.address = address
        self.atMs = atMs
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
    func bindings() throws -> [String: DeviceBindingRecord]
    /// Every held message, oldest first (read once at start).
    func heldMessages() throws -> [HeldMessage]
    /// Stores a held message, replacing an earlier one of the same kind from the same address; returns it with its id.
    func hold(_ message: HeldMessage) async throws -> HeldMessage
    /// Deletes held messages by id.
    func deleteHeld(_ ids: [Int64]) async throws
}

extension SQLiteDeviceStore: BindingStore {
    public func bindings() throws -> [String: DeviceBindingRecord] {
        try database.pool.read { db in
            var bindings: [String: DeviceBindingRecord] = [:]
            let rows = try Row.fetchCursor(
                db,
                sql: "SELECT device_id, bound_address, bound_at_ms FROM devices WHERE bound_address IS NOT NULL"
            )
            while let row = try rows.next() {
                bindings[row[0]] = DeviceBindingRecord(address: row[1], atMs: row[2])
            }
            return bindings
        }
    }

    static func heldMessage(_ row: Row) -> HeldMessage? {
        guard let kind = HeldMessageKind(rawValue: row["kind"]), let body = JSONValue(storedText: row["body"]) else { return nil }
        return HeldMessage(
            id: row["id"],
            deviceID: row["device_id"],
            address: row["address"],
            kind: kind,
            body: body,
            receivedAtMs: row["received_at_ms"]
        )
    }

    public func heldMessages() throws -> [HeldMessage] {
        try database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM held_messages ORDER BY id").compactMap(Self.heldMessage)
        }
    }

    public func hold(_ message: HeldMessage) async throws -> HeldMessage {
        let retention = retention
        return try await writer.write { db in
            try db.execute(
                sql: "DELETE FROM held_messages WHERE device_id = ? AND address = ? AND kind = ?",
                arguments: [message.deviceID, message.address, message.kind.rawValue]
            )
            try Retention.removed(db, .heldMessages, count: db.changesCount, dropped: false)
            try db.execute(
                sql: "INSERT INTO held_messages (device_id, address, kind, body, received_at_ms) VALUES (?, ?, ?, ?, ?)",
                arguments: [message.deviceID, message.address, message.kind.rawValue, message.body.serialized, message.receivedAtMs]
            )
            var stored = message
            stored.id = db.lastInsertedRowID
            try Retention.added(db, .heldMessages, deviceID: message.deviceID, pending: false, policy: retention)
            return stored
        }
    }

    public func deleteHeld(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await writer.write { db in
            for id in ids {
                try db.cachedStatement(sql: "DELETE FROM held_messages WHERE id = ?").execute(arguments: [id])
                try Retention.removed(db, .heldMessages, count: db.changesCount, dropped: false)
            }
        }
    }
}
