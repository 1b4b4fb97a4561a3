import EcoWattProtocol
import Synchronization

/// Every store protocol kept in memory, under one lock as one database: the same server without a database (`ecowatt
/// decode`, tests). It passes the same contract suites as the SQLite stores (`EcoWattStorageTests`).
public final class InMemoryStore: TelemetryStore, OutboxStore, BindingStore, AccountStore {
    struct State {
        var nonces: [String: UInt32] = [:]
        /// ``DeviceIngestState/version`` per device.
        var versions: [String: Int64] = [:]
        var streams: [String: DeviceStreamState] = [:]
        var samples: [String: [SampleRow]] = [:]
        var packets: [String: [PacketRow]] = [:]
        var credentials: [String: DeviceCredential] = [:]
        /// Accounts, sessions, tokens and the audit trail (``InMemoryStore`` as ``AccountStore``).
        var accounts = AccountTables()
        var nextPacketID: Int64 = 1
        /// Where each packet's samples are in its device's `samples`, by packet id (re-timing finds the packet by
        /// serial, the outbox by id); and what the outbox reads of a packet besides its row.
        var packetSamples: [Int64: [Int]] = [:]
        var packetFacts: [Int64: (receivedAtMs: Int64, originalSize: Int, compressedSize: Int)] = [:]
        /// The MQTT outbox: (outbox id, device, packet id), in id order.
        var outbox: [(id: Int64, device: String, packetID: Int64)] = []
        var nextOutboxID: Int64 = 1

        /// Bindings (set by verified uploads) and held messages.
        var bindings: [String: DeviceBindingRecord] = [:]
        var held: [HeldMessage] = []
        var nextHeldID: Int64 = 1

        /// Rollups as the SQLite store keeps them: materialised, recomputed for the changed range by
        /// ``refreshRollups(limit:)``; the range each device changed since, and the latest time retention dropped.
        var rollups: [String: [RollupResolution: [Int64: TelemetryRollup]]] = [:]
        var changed: [String: ClosedRange<Int64>] = [:]
        var rollupFloors: [String: Int64] = [:]

        /// The registry, commands, configuration, reports and OTA (``InMemoryStore`` as ``DeviceRegistryStore`` …).
        var registry = RegistryTables()
        var rollouts = RolloutTables()

        mutating func markChanged(_ device: String, times: [Int64]) {
            guard let low = times.min(), let high = times.max() else { return }
            let old = changed[device] ?? low...high
            changed[device] = min(old.lowerBound, low)...max(old.upperBound, high)
        }

        mutating func queue(device: String, packetID: Int64) {
            outbox.append((nextOutboxID, device, packetID))
            nextOutboxID += 1
        }
    }

    let state = Mutex(State())
    let retention: RetentionPolicy
    /// Told (after the change) which ids got a registry row and which pending devices the caps dropped.
    public let events: RegistryEvents

    /// - Parameter retention: the caps on rows and pending devices, as the SQLite store keeps them.
    public init(retention: RetentionPolicy = RetentionPolicy(), events: RegistryEvents = RegistryEvents()) {
        self.retention = retention
        self.events = events
    }

    public func ingestState(deviceID: String) async throws -> DeviceIngestState {
        state.withLock {
            DeviceIngestState(
                lastNonce: $0.nonces[deviceID],
                stream: $0.streams[deviceID] ?? .init(),
                admitted: $0.registry.devices[deviceID].map { $0.admission != "pending" } ?? false,
                version: $0.versions[deviceID] ?? 0
            )
        }
    }

    public func submit(_ record: IngestRecord) -> WriteTicket<Void> {
        .settled(
            state.withLock { state -> Result<Void, any Error> in
                let device = record.deviceID
                if let stored = state.nonces[device], record.nonce <= stored {
                    return .failure(StoreError.nonceNotIncreasing(deviceID: device, nonce: record.nonce, stored: stored))
                }
                if let expected = record.expectedVersion, expected != state.versions[device] ?? 0 {
                    return .failure(StoreError.stateChanged(deviceID: device))
                }
                state.versions[device, default: 0] += 1
                state.nonces[device] = record.nonce
                state.streams[device] = record.streamState
                state.registry.uploaded(record)
                if let address = record.clientAddress {
                    state.bindings[device] = DeviceBindingRecord(address: address, atMs: record.receivedAtMs)
                }
                for packet in record.packets where !packet.resend {
                    state.packets[device, default: []].append(
                        PacketRow(
                            id: state.nextPacketID,
                            deviceID: device,
                            nonce: record.nonce,
                            packetIndex: packet.index,
                            marker: packet.marker,
                            method: packet.method,
                            registerLayout: packet.registerLayout,
                            sampleCount: packet.sampleCount,
                            lastSampleMs: packet.lastSampleEpochMs,
                            decoded: packet.isDecoded,
                            approximate: packet.approximate,
                            truncated: packet.truncated,
                            reason: packet.reason?.rawValue,
                            blob: packet.isDecoded ? nil : packet.blob,
                            serial: packet.serial,
                            timeEstimated: packet.timeEstimated
                        )
                    )
                    let packetID = state.nextPacketID
                    state.nextPacketID += 1
                    state.packetFacts[packetID] = (record.receivedAtMs, packet.originalSize, packet.compressedSize)
                    state.append(packet.samples ?? [], times: packet.sampleTimesMs, of: packet, device: device, packetID: packetID)
                    state.markChanged(device, times: packet.samples == nil ? [] : packet.sampleTimesMs)
                    if record.queueForFeed { state.queue(device: device, packetID: packetID) }
                }
                for update in record.updates {
                    guard let position = state.packets[device]?.firstIndex(where: { $0.serial == update.serial }) else { continue }
                    if let rows = update.samples {
                        state.packets[device]?[position].decoded = true
                        state.packets[device]?[position].reason = nil
                        state.packets[device]?[position].blob = nil
                        let stored = state.packets[device]![position]
                        var packet = DecodedPacket(
                            index: stored.packetIndex,
                            marker: stored.marker,
                            method: stored.method,
                            registerLayout: stored.registerLayout,
                            sampleCount: stored.sampleCount,
                            samples: rows,
                            sampleTimesMs: update.sampleTimesMs,
                            lastSampleEpochMs: stored.lastSampleMs,
                            approximate: stored.approximate,
                            truncated: stored.truncated,
                            reason: nil,
                            detail: nil,
                            blob: [],
                            compressedSize: 0,
                            originalSize: 0
                        )
                        packet.serial = update.serial
                        packet.timeEstimated = update.timeEstimated
                        state.append(rows, times: update.sampleTimesMs, of: packet, device: device, packetID: stored.id)
                        state.markChanged(device, times: update.sampleTimesMs)
                        if record.queueForFeed { state.queue(device: device, packetID: stored.id) }
                    } else {
                        let packetID = state.packets[device]![position].id
                        for (index, time) in zip(state.packetSamples[packetID] ?? [], update.sampleTimesMs) {
                            state.markChanged(device, times: [state.samples[device]?[index].timestampMs ?? time, time])
                            state.samples[device]?[index].timestampMs = time
                        }
                    }
                }
                return .success(())
            }
        )
    }

    public func submitStreamState(deviceID: String, state stream: DeviceStreamState) -> WriteTicket<Void> {
        state.withLock {
            $0.streams[deviceID] = stream
            $0.versions[deviceID, default: 0] += 1
        }
        return .settled(.success(()))
    }

    public func recordNonceJumpRefused(deviceID: String, nonce: UInt32) async throws {
        state.withLock { state in
            state.registry.devices[deviceID]?.nonceJumpsRefused += 1
            state.registry.devices[deviceID]?.lastRefusedNonce = Int64(nonce)
        }
    }

    public func submitNonceReset(deviceID: String) -> WriteTicket<Bool> {
        .settled(
            .success(
                state.withLock {
                    guard $0.nonces.removeValue(forKey: deviceID) != nil else { return false }
                    $0.versions[deviceID, default: 0] += 1
                    return true
                }
            )
        )
    }

    public func latestSample(deviceID: String) async throws -> SampleRow? {
        state.withLock { $0.samples[deviceID]?.max { $0.timestampMs < $1.timestampMs } }
    }

    public func samples(deviceID: String, fromMs: Int64, toMs: Int64, limit: Int) async throws -> [SampleRow] {
        guard limit > 0, fromMs <= toMs else { return [] }
        return state.withLock { state in
            Array(
                (state.samples[deviceID] ?? []).filter { (fromMs...toMs).contains($0.timestampMs) }
                    .sorted { $0.timestampMs < $1.timestampMs }.prefix(limit)
            )
        }
    }

    public func packets(deviceID: String, before: Int64?, limit: Int) async throws -> [PacketRow] {
        state.withLock { Array(($0.packets[deviceID] ?? []).reversed().filter { $0.id < before ?? .max }.prefix(max(0, limit))) }
    }

    public func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxPacket] {
        state.withLock { state in
            state.outbox.filter { $0.id > afterID }.prefix(limit).compactMap { entry -> OutboxPacket? in
                guard let row = state.packets[entry.device]?.first(where: { $0.id == entry.packetID }) else { return nil }
                let samples = (state.packetSamples[entry.packetID] ?? []).compactMap { state.samples[entry.device]?[$0] }
                let facts = state.packetFacts[entry.packetID] ?? (0, 0, 0)
                return OutboxPacket(
                    id: entry.id,
                    deviceID: entry.device,
                    method: row.method,
                    registerLayout: row.registerLayout,
                    samples: samples.map(\.rawValues),
                    sampleTimesMs: samples.map(\.timestampMs),
                    lastSampleMs: row.lastSampleMs,
                    approximate: row.approximate,
                    reason: row.reason,
                    originalSize: facts.originalSize,
                    compressedSize: facts.compressedSize,
                    receivedAtMs: facts.receivedAtMs
                )
            }
        }
    }

    public func deleteOutbox(through id: Int64) async throws {
        state.withLock { $0.outbox.removeAll { $0.id <= id } }
    }

    public func outboxCount() async throws -> Int {
        state.withLock { $0.outbox.count }
    }

    public func bindings() async throws -> [String: DeviceBindingRecord] {
        state.withLock { $0.bindings }
    }

    public func heldMessages() async throws -> [HeldMessage] {
        state.withLock { $0.held }
    }

    public func heldMessages(deviceID: String) async throws -> [HeldMessage] {
        state.withLock { $0.held.filter { $0.deviceID == deviceID } }
    }

    public func hold(_ message: HeldMessage) async throws -> HeldMessage {
        let cap = retention.heldMessages
        return state.withLock { state in
            state.held.removeAll { $0.deviceID == message.deviceID && $0.address == message.address && $0.kind == message.kind }
            var stored = message
            stored.id = state.nextHeldID
            state.nextHeldID += 1
            state.held.append(stored)
            let dropped =
                RegistryTables.trim(&state.held, keep: cap.perDevice) { $0.deviceID == message.deviceID }
                + RegistryTables.trimTotal(&state.held, total: cap.total)
            state.registry.dropped(.heldMessages, dropped)
            return stored
        }
    }

    public func deleteHeld(_ ids: [Int64]) async throws {
        let doomed = Set(ids)
        state.withLock { $0.held.removeAll { doomed.contains($0.id) } }
    }
}

extension InMemoryStore.State {
    mutating func append(_ rows: [[UInt16]], times: [Int64], of packet: DecodedPacket, device: String, packetID: Int64) {
        for (row, time) in zip(rows, times) {
            packetSamples[packetID, default: []].append(samples[device]?.count ?? 0)
            samples[device, default: []].append(
                SampleRow(
                    deviceID: device,
                    timestampMs: time,
                    registerLayout: packet.registerLayout,
                    rawValues: row,
                    method: packet.method,
                    ratio: packet.ratio,
                    approximate: packet.approximate,
                    timeEstimated: packet.timeEstimated
                )
            )
        }
    }
}
