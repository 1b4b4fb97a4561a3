import EcoWattProtocol
import EcoWattStorage
import Logging

/// What changes a device's decoder state besides its uploads: unsigned boot signals, an acknowledged configuration,
/// forgetting a deleted device, and the operator's nonce reset.
extension IngestService {
    /// A boot signal (registration or boot report, from the device's bound address or confirmed by a verified upload
    /// from the address it came from). Unsigned, so it never discards the encoder model: it opens the reboot hypothesis
    /// beside it (``DeviceStreamState/bootSignal()``), and signed uploads decide.
    public func bootSignal(_ deviceID: String, atMs: Int64) async throws {
        guard try await updateStream(deviceID, { $0.bootSignal(atMs: atMs) }) else { return }
        // Debug only: boot signals are unauthenticated and may come by the thousand.
        logger.debug("device boot signal: reboot hypothesis opened", metadata: ["device_id": LogText.value(deviceID)])
    }

    /// The device acknowledged a configuration change (spec §5.3): the sample times of its next packet account for a
    /// new sampling interval from then on.
    public func configurationApplied(_ deviceID: String, atMs: Int64) async throws {
        try await updateStream(deviceID) { $0.configurationApplied(atMs: atMs) }
    }

    /// Applies an unsigned event to a device's stream model and stores it; false (nothing done) for a device that never
    /// uploaded: its model is fresh anyway, and random ids must not grow the cache.
    @discardableResult
    func updateStream(_ deviceID: String, _ change: (inout DeviceStreamState) -> Void) async throws -> Bool {
        let ticket = try await withState(deviceID) { cache, cached -> WriteTicket<Void>? in
            var state = cached
            guard state.lastNonce != nil else {
                cache[deviceID] = nil
                return nil
            }
            change(&state.stream)
            state.version += 1  // the write below counts as one (this instance's writes commit in order)
            cache[deviceID] = state
            return store.submitStreamState(deviceID: deviceID, state: state.stream)
        }
        guard let ticket else { return false }
        try await ticket.value()
        return true
    }

    /// Drops the cached state of a deleted device (the store has forgotten it).
    public func forget(_ deviceID: String) {
        devices.withLock { $0[deviceID] = nil }
    }

    /// Operator reset of the anti-replay state (spec §2.4). Returns whether the device had any.
    public func resetNonce(deviceID: String) async throws -> Bool {
        let ticket = try await withState(deviceID) { cache, cached in
            var state = cached
            state.lastNonce = nil
            state.version += 1
            cache[deviceID] = state
            return store.submitNonceReset(deviceID: deviceID)
        }
        let existed = try await ticket.value()
        logger.notice("nonce state reset by operator", metadata: ["device_id": "\(deviceID)"])
        return existed
    }
}
