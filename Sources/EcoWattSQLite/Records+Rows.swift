import EcoWattStorage
import GRDB

// The records read from SQLite rows (the record types live in EcoWattStorage, without GRDB).

extension CommandRow {
    /// The columns `init(row:)` reads, by position in this order; every query of a command selects these, never `*`.
    /// GRDB finds a column by name with a case-insensitive scan of the row's names (a `String.lowercased()` each): with
    /// 18 columns that was 5 % of the writer thread's CPU in a dispatching poll, and the writer bounds polls per second
    /// (issue 23). `dispatched_to` is last: only a result's check reads it (``dispatchedTo(_:)``).
    static let columnNames = [
        "id", "command_id", "device_id", "action", "target_register", "register_address", "value", "status",
        "idempotency_key", "created_at_ms", "expires_at_ms", "dispatched_at_ms", "finished_at_ms", "result_status",
        "executed_at", "result_json", "error_msg", "dispatched_to",
    ]
    /// `columnNames` for a `SELECT` or `RETURNING` list.
    static let columns = columnNames.joined(separator: ", ")

    init(row: Row) {
        assert(row.columnNames.elementsEqual(Self.columnNames), "a command query must select CommandRow.columns")
        self.init(
            commandID: row[1],
            deviceID: row[2],
            action: row[3],
            targetRegister: row[4],
            registerAddress: row[5],
            value: row[6],
            status: CommandStatus(rawValue: row[7]) ?? .pending,
            idempotencyKey: row[8],
            createdAtMs: row[9],
            expiresAtMs: row[10],
            dispatchedAtMs: row[11],
            finishedAtMs: row[12],
            resultStatus: row[13],
            executedAt: row[14],
            resultJSON: row[15],
            errorMessage: row[16]
        )
        sequence = row[0]
    }

    /// The address a command was dispatched to, from a row of `columns`.
    static func dispatchedTo(_ row: Row) -> String? { row[17] }
}

extension DeviceRow {
    init(row: Row) {
        self.init(
            deviceID: row["device_id"],
            deviceName: row["device_name"],
            location: row["location"],
            description: row["description"],
            firmwareVersion: row["firmware_version"],
            registeredAtMs: row["registered_at_ms"],
            firstSeenMs: row["first_seen_ms"],
            lastSeenMs: row["last_seen_ms"],
            uploadCount: row["upload_count"],
            admission: row["admission"],
            boundAddress: row["bound_address"],
            boundAtMs: row["bound_at_ms"],
            nonceJumpsRefused: row["nonce_jumps_refused"],
            lastRefusedNonce: row["last_refused_nonce"],
            refusedUploads: row["refused_uploads"]
        )
    }
}

extension OTASession {
    init(row: Row) {
        self.init(
            sessionID: row["session_id"],
            deviceID: row["device_id"],
            version: row["version"],
            deploymentID: row["deployment_id"],
            fromVersion: row["from_version"],
            totalChunks: row["total_chunks"],
            chunksServed: row["chunks_served"],
            bytesServed: row["bytes_served"],
            lastChunk: row["last_chunk"],
            phase: row["phase"],
            progress: row["progress"],
            startedAtMs: row["started_at_ms"],
            updatedAtMs: row["updated_at_ms"],
            endedAtMs: row["ended_at_ms"],
            outcome: (row["outcome"] as String?).flatMap(OTAOutcome.init(rawValue:)),
            message: row["message"],
            reportedVersion: row["reported_version"],
            reportedStatus: row["reported_status"]
        )
        sequence = row["rowid"] as Int64? ?? 0
    }
}
