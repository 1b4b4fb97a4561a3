import Foundation

extension InMemoryStore: OTAStore {
    public func createDeployment(_ deployment: OTADeployment) async throws -> OTADeployment {
        state.withLock { state in
            let targets = deployment.deviceIDs.map { Array(Set($0)).sorted() }
            for deviceID in targets ?? [] { state.registry.adopt(deviceID, nowMs: deployment.createdAtMs) }
            var stored = deployment
            stored.id = state.registry.takeID()
            stored.status = "active"
            stored.deviceIDs = targets
            state.registry.deployments.append(stored)
            return stored
        }
    }

    public func deployments(status: String?, before: Int64?, limit: Int) async throws -> [OTADeployment] {
        state.withLock { state in
            Array(
                state.registry.deployments.reversed().filter { deployment in
                    deployment.id < before ?? .max && (status.map { deployment.status == $0 } ?? true)
                }
                .prefix(max(0, limit))
            )
        }
    }

    public func cancelDeployment(id: Int64, nowMs: Int64) async throws -> OTADeployment? {
        state.withLock { state in
            guard let index = state.registry.deployments.firstIndex(where: { $0.id == id }) else { return nil }
            if state.registry.deployments[index].status == "active" {
                state.registry.deployments[index].status = "cancelled"
                state.registry.deployments[index].cancelledAtMs = nowMs
            }
            return state.registry.deployments[index]
        }
    }

    public func attempts(deviceID: String, version: String, sinceMs: Int64) async throws -> (failed: Int, versionMismatch: Bool) {
        state.withLock { state in
            let mine = state.registry.sessions.filter { $0.deviceID == deviceID && $0.version == version }
            let failed = mine.count { [.failed, .rolledBack].contains($0.outcome) && $0.startedAtMs >= sinceMs }
            return (failed, mine.contains { $0.outcome == .versionMismatch })
        }
    }

    public func startSession(_ session: OTASession) async throws -> [String] {
        let policy = retention
        return admitting(session.deviceID, nowMs: session.startedAtMs) { state, pending in
            var replaced: [String] = []
            for index in state.registry.sessions.indices
            where state.registry.sessions[index].deviceID == session.deviceID && state.registry.sessions[index].outcome == nil {
                replaced.append(state.registry.sessions[index].sessionID)
                state.registry.sessions[index].end(.replaced, message: "replaced by a new initiate", nowMs: session.startedAtMs)
            }
            var stored = session
            stored.sequence = state.registry.takeID()
            stored.progress = 0
            stored.updatedAtMs = session.startedAtMs
            state.registry.sessions.append(stored)
            state.registry.boundSessions(deviceID: session.deviceID, pending: pending, policy: policy)
            // Progress the device sent just before initiating ("Starting firmware download...") belongs to this session.
            for index in state.registry.otaEvents.indices {
                let event = state.registry.otaEvents[index].event
                guard event.deviceID == session.deviceID, event.sessionID == nil, event.receivedAtMs >= session.startedAtMs - 120_000
                else { continue }
                state.registry.otaEvents[index].event.sessionID = session.sessionID
            }
            return replaced
        }
    }

    public func activeSessions() async throws -> [OTASession] {
        state.withLock { $0.registry.sessions.filter { $0.outcome == nil } }
    }

    public func recordProgress(_ event: OTAEvent, outcome: OTAOutcome?) async throws {
        let policy = retention
        admitting(event.deviceID, nowMs: event.receivedAtMs) { state, pending in
            state.registry.otaEvents.append((state.registry.takeID(), event))
            state.registry.boundEvents(of: event, policy: policy)
            guard let sessionID = event.sessionID,
                let index = state.registry.sessions.firstIndex(where: { $0.sessionID == sessionID && $0.outcome == nil })
            else { return }
            state.registry.sessions[index].phase = event.phase
            state.registry.sessions[index].progress = event.progress ?? state.registry.sessions[index].progress
            state.registry.sessions[index].updatedAtMs = event.receivedAtMs
            state.registry.sessions[index].message = event.message ?? state.registry.sessions[index].message
            if let outcome {
                state.registry.sessions[index].outcome = outcome
                state.registry.sessions[index].endedAtMs = event.receivedAtMs
            }
        }
    }

    public func saveCounters(_ counters: [String: OTAChunkCounters]) async throws {
        state.withLock { state in
            for index in state.registry.sessions.indices {
                guard let counter = counters[state.registry.sessions[index].sessionID] else { continue }
                state.registry.sessions[index].chunksServed += counter.chunksServed
                state.registry.sessions[index].bytesServed += counter.bytesServed
                state.registry.sessions[index].lastChunk = counter.lastChunk
                state.registry.sessions[index].updatedAtMs = max(state.registry.sessions[index].updatedAtMs, counter.updatedAtMs)
            }
        }
    }

    public func endSession(
        _ sessionID: String,
        outcome: OTAOutcome,
        message: String?,
        reportedVersion: String?,
        reportedStatus: String?,
        nowMs: Int64
    ) async throws -> Bool {
        state.withLock { state in
            guard let index = state.registry.sessions.firstIndex(where: { $0.sessionID == sessionID && $0.outcome == nil }) else {
                return false
            }
            state.registry.sessions[index].end(outcome, message: message, nowMs: nowMs)
            state.registry.sessions[index].reportedVersion = reportedVersion
            state.registry.sessions[index].reportedStatus = reportedStatus
            return true
        }
    }

    public func session(_ sessionID: String) async throws -> OTASession? {
        state.withLock { $0.registry.sessions.first { $0.sessionID == sessionID } }
    }

    public func sessions(deviceID: String, outcome: String?, before: OTASessionCursor?, limit: Int) async throws -> [OTASession] {
        state.withLock { state in
            let mine = state.registry.sessions.filter { session in
                guard session.deviceID == deviceID else { return false }
                if let outcome, outcome == "active" ? session.outcome != nil : session.outcome?.rawValue != outcome { return false }
                guard let before else { return true }
                return (session.startedAtMs, session.sequence) < (before.startedAtMs, before.sequence)
            }
            // Newest first: by start time, then by sequence.
            return Array(mine.sorted { ($0.startedAtMs, $0.sequence) > ($1.startedAtMs, $1.sequence) }.prefix(max(0, limit)))
        }
    }

    public func events(sessionID: String, limit: Int) async throws -> [OTAEvent] {
        state.withLock { Array($0.registry.otaEvents.map(\.event).filter { $0.sessionID == sessionID }.prefix(max(0, limit))) }
    }

    public func otaCounts() async throws -> OTACounts {
        state.withLock { state in
            var counts = OTACounts()
            for session in state.registry.sessions {
                counts.sessionsByOutcome[session.outcome?.rawValue ?? "active", default: 0] += 1
                counts.chunksServed += Int64(session.chunksServed)
                counts.bytesServed += session.bytesServed
            }
            counts.activeSessions = counts.sessionsByOutcome["active"] ?? 0
            return counts
        }
    }

    public func setFirmwareVersion(deviceID: String, version: String) async throws {
        state.withLock { state in
            guard state.registry.devices[deviceID] != nil else { return }
            state.registry.devices[deviceID]?.firmwareVersion = version
        }
    }

    public func expireSessions(idleBeforeMs: Int64, nowMs: Int64) async throws -> [(sessionID: String, deviceID: String)] {
        state.withLock { state in
            var expired: [(sessionID: String, deviceID: String)] = []
            for index in state.registry.sessions.indices
            where state.registry.sessions[index].outcome == nil && state.registry.sessions[index].updatedAtMs < idleBeforeMs {
                state.registry.sessions[index].end(.expired, message: "no chunk or progress for too long", nowMs: nowMs)
                expired.append((state.registry.sessions[index].sessionID, state.registry.sessions[index].deviceID))
            }
            return expired
        }
    }
}

extension OTASession {
    mutating func end(_ outcome: OTAOutcome, message: String?, nowMs: Int64) {
        self.outcome = outcome
        self.message = message ?? self.message
        endedAtMs = nowMs
        updatedAtMs = nowMs
    }
}

extension RegistryTables {
    /// After a session started: the device's oldest ended sessions beyond its cap, then the oldest ended sessions
    /// beyond the total, each with its events (active sessions are never dropped).
    mutating func boundSessions(deviceID: String, pending: Bool, policy: RetentionPolicy) {
        let keep = Self.perDevice(.otaSessions, pending: pending, policy: policy)
        let ended = sessions.enumerated().filter { $0.element.deviceID == deviceID && $0.element.outcome != nil }
            .sorted { ($0.element.startedAtMs, $0.offset) > ($1.element.startedAtMs, $1.offset) }
        var doomed = Set(ended.dropFirst(keep).map(\.element.sessionID))
        let total = policy.otaSessions.total
        if sessions.count - doomed.count > total {
            let excess = sessions.count - doomed.count - total + max(1, total / 10)
            doomed.formUnion(sessions.filter { $0.outcome != nil && !doomed.contains($0.sessionID) }.prefix(excess).map(\.sessionID))
        }
        guard !doomed.isEmpty else { return }
        dropped(.otaSessions, Self.remove(&sessions) { doomed.contains($0.sessionID) })
        dropped(.otaEvents, Self.remove(&otaEvents) { $0.event.sessionID.map(doomed.contains) ?? false })
    }

    /// After an event was stored: its session's oldest events beyond the per-session cap (events without a session: a
    /// few per device), then the oldest events beyond the total.
    mutating func boundEvents(of event: OTAEvent, policy: RetentionPolicy) {
        var dropped =
            if let sessionID = event.sessionID {
                Self.trim(&otaEvents, keep: policy.otaEvents.perDevice) { $0.event.sessionID == sessionID }
            } else {
                Self.trim(&otaEvents, keep: policy.pendingRowsPerDevice) { $0.event.deviceID == event.deviceID && $0.event.sessionID == nil }
            }
        dropped += Self.trimTotal(&otaEvents, total: policy.otaEvents.total)
        self.dropped(.otaEvents, dropped)
    }
}
