import EcoWattStorage
import Foundation
import GRDB

/// A value read through ``DatabaseInspector``.
public enum SQLValue: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }

    public var int: Int? { if case .integer(let value) = self { Int(value) } else { nil } }
    public var int64: Int64? { if case .integer(let value) = self { value } else { nil } }
    public var double: Double? {
        switch self {
        case .real(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }
    public var string: String? { if case .text(let value) = self { value } else { nil } }
    public var bytes: [UInt8]? { if case .blob(let value) = self { value } else { nil } }
    public var bool: Bool? { int.map { $0 != 0 } }

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let integer): self = .integer(integer)
        case .double(let real): self = .real(real)
        case .string(let text): self = .text(text)
        case .blob(let data): self = .blob(Array(data))
        }
    }

    var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case .integer(let value): value.databaseValue
        case .real(let value): value.databaseValue
        case .text(let value): value.databaseValue
        case .blob(let value): Data(value).databaseValue
        }
    }
}

/// One row read through ``DatabaseInspector``: its columns by name.
public struct SQLRow: Sendable {
    let columns: [String: SQLValue]
    public subscript(_ column: String) -> SQLValue { columns[column] ?? .null }
}

/// Read-only SQL against the server's database, for tests and diagnostics: the one way outside this module to look
/// at rows directly (the services go through the store protocols), so that nothing else imports GRDB.
public final class DatabaseInspector: Sendable {
    let reader: any DatabaseWriter

    /// Through the server's own pool.
    public init(_ database: EcoWattDatabase) {
        reader = database.pool
    }

    /// A separate connection to the database file at `path` (e.g. a running server's, from another process).
    public init(path: String) throws {
        reader = try DatabaseQueue(path: path)
    }

    public func rows(_ sql: String, _ arguments: [SQLValue] = []) throws -> [SQLRow] {
        try reader.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments.map(\.databaseValue))).map { row in
                SQLRow(columns: Dictionary(row.columnNames.map { ($0, SQLValue(row[$0] as DatabaseValue)) }) { first, _ in first })
            }
        }
    }

    /// The first column of the first row.
    public func value(_ sql: String, _ arguments: [SQLValue] = []) throws -> SQLValue {
        try reader.read { db in
            try DatabaseValue.fetchOne(db, sql: sql, arguments: StatementArguments(arguments.map(\.databaseValue)))
        }.map(SQLValue.init) ?? .null
    }

    public func int(_ sql: String, _ arguments: [SQLValue] = []) throws -> Int? { try value(sql, arguments).int }
    public func string(_ sql: String, _ arguments: [SQLValue] = []) throws -> String? { try value(sql, arguments).string }

    /// Statements run straight on the file, bypassing the server: what someone with write access to the database can
    /// do. Tests use it to play that attacker (editing, deleting, truncating and recomputing the audit chain).
    public func writeBypassingTheServer(_ statements: [String]) throws {
        try reader.write { db in for sql in statements { try db.execute(sql: sql) } }
    }

    /// `PRAGMA wal_checkpoint(PASSIVE)` from this connection (copies committed pages without waiting for readers).
    public func checkpointPassively() throws {
        _ = try reader.writeWithoutTransaction { try Row.fetchOne($0, sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}

/// A stored packet as ``DatabaseInspector/packets(deviceID:)`` reads it back from its chunk.
public struct InspectedPacket: Sendable {
    /// The packet's id (its chunk's id and place).
    public let id: Int64
    public let deviceID: String
    public let layout: [Int]
    public let packet: ChunkPacket
}

extension DatabaseInspector {
    /// Every stored packet (of `deviceID`, or of all devices), in the order they were stored, decoded from the chunks.
    public func packets(deviceID: String? = nil) throws -> [InspectedPacket] {
        try reader.read { db in
            let rows =
                if let deviceID {
                    try Row.fetchAll(
                        db,
                        sql: "SELECT id, device_id, body FROM telemetry_chunks WHERE device_id = ? ORDER BY id",
                        arguments: [deviceID]
                    )
                } else {
                    try Row.fetchAll(db, sql: "SELECT id, device_id, body FROM telemetry_chunks ORDER BY id")
                }
            return try rows.flatMap { row in
                let stored = try TelemetryChunks.decode(row)
                return stored.chunk.packets.enumerated().map { place, packet in
                    InspectedPacket(
                        id: ChunkReading.packetID(chunk: stored.id, place: place),
                        deviceID: stored.deviceID,
                        layout: stored.chunk.layout,
                        packet: packet
                    )
                }
            }
        }
    }
}
