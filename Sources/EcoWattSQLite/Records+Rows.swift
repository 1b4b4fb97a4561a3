import EcoWattStorage
import GRDB

// The records read from SQLite rows (the record types live in EcoWattStorage, without GRDB).

extension CommandRow {
    init(row: Row) {
        self.init(
            commandID: row["command_id"],
            deviceID: row["device_id"],
            action: row["action"],
            targetRegister: row["target_register"],
            registerAddress: row["register_address"],
            value: row["value"],
            status: CommandStatus(rawValue: row["status"]) ?? .pending,
            idempotencyKey: row["idempotency_key"],
            createdAtMs: row["created_at_ms"],
            expiresAtMs: row["expires_at_ms"],
            dispatchedAtMs: row["dispatched_at_ms"],
            finishedAtMs: row["finished_at_ms"],
            resultStatus: row["result_status"],
            executedAt: row["executed_at"],
            resultJSON: row["result_json"],
            errorMessage: row["error_msg"]
        )
        sequence = row["id"]
    }
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
